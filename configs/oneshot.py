r"""One-shot training (Chen, Chan, Zhang): the memory network from ONE
labelled frame per training video, by a forward-backward chain.

Smoke test (synthetic videos, seconds on CPU):

  python -m metavos.main --config=configs/oneshot.py:smoke --workdir=runs/oneshot_smoke

Real DAVIS 2016 240p train-no-dev (one randomly drawn annotated frame of
each video labelled, drawn with labels.seed and recorded in labels.json),
evaluated on dev (2 CPU cores), one run per backward variant; each first
trains the synthetic pre-training stage (config.pretrain, ~10 min) in
<workdir>/pretrain, or shares one through --config.pretrain.workdir:

  python -m metavos.main --config=configs/oneshot.py:davis16_cpu --workdir=runs/oneshot_one_step
  python -m metavos.main --config=configs/oneshot.py:davis16_cpu --workdir=runs/oneshot_t_step \
    --config.oneshot.variant=t_step --config.pretrain.workdir=runs/oneshot_one_step/pretrain
  python -m metavos.main --config=configs/oneshot.py:davis16_cpu --workdir=runs/oneshot_two_step \
    --config.oneshot.variant=two_step --config.pretrain.workdir=runs/oneshot_one_step/pretrain

The first frame of each video as its label instead of a random one:

  python -m metavos.main --config=configs/oneshot.py:davis16_cpu --workdir=W \
    --config.labels.kind=first

Evaluate a trained network (the same contract as every method):

  python -m metavos.main --config=configs/oneshot.py:davis16_cpu --workdir=W \
    --config.mode=evaluate --config.restore=runs/oneshot_one_step/checkpoints

Defaults (1-step backward, a random labelled frame): the best one-shot
setting measured, 92% of supervised STCN over 5 seeds on synthetic videos
against 86% for T-step from the first frame; on DAVIS dev after the
synthetic stage 99.7% of supervised over 3 seeds (BENCHMARKS.md, "Memory
network").

All of it against supervised STCN: `bash benchmarks/oneshot_davis16.sh`.
"""

import ml_collections

from metavos.configs import common, stcn


def oneshot_config() -> ml_collections.ConfigDict:
  """The forward-backward chain (metavos.memory.forward_backward)."""
  o = ml_collections.ConfigDict()
  o.variant = "one_step"      # Backward leg: "t_step" (T..0 in reverse) | "one_step" (T -> 0) | "two_step" (T -> random i -> 0).
  o.num_forward = 3           # T: frames predicted forward from the labelled frame (clips of T + 1 frames).
  o.static_pretrain_steps = 0 # First N steps on static clips (warps of the labelled frame); 0 = off.
  s = o.static = ml_collections.ConfigDict()  # Static clips (metavos.memory.static_clips).
  s.flip = False              # Random horizontal flip of each synthesised frame.
  s.scale_range = (0.9, 1.1)  # Random zoom of each synthesised frame.
  s.max_rotation_deg = 15.0   # Random rotation in [-x, x] degrees.
  s.brightness = 0.1          # Random brightness offset in [-x, x] (images in [0, 1]).
  s.contrast = 0.2            # Random contrast factor in [1 - x, 1 + x].
  s.saturation = 0.2          # Random saturation factor in [1 - x, 1 + x].
  return o


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the one-shot config; arg as configs/stcn.py's."""
  c = common.base_config("oneshot")
  c.memory = stcn.memory_config()
  c.clip = stcn.clip_config()
  # The clip length is oneshot.num_forward + 1; a second knob could disagree.
  del c.clip.length
  c.labels = stcn.labels_config()
  c.labels.kind = "random"    # One labelled frame per video (labels.per_video = 1), drawn with labels.seed; "first": frame 0.
  c.pretrain = stcn.pretrain_config()
  c.optim = stcn.optim_config()
  c.loss = stcn.loss_config()
  c.oneshot = oneshot_config()
  c.train.num_steps = 1000
  c.train.batch_size = 4      # Clips per step over all devices.
  a = common.parse_arg(arg, file="configs/oneshot.py", aliases=stcn.RECIPES,
                       **stcn.AXES)
  c.memory.network = a.network
  common.use_data(c, a.data)
  if a.size == "smoke":
    stcn.shrink_for_smoke(c)
    c.oneshot.num_forward = 2
    c.oneshot.static_pretrain_steps = 1
    c.eval.pictures = False   # Keeps the smoke run to training and scoring.
  elif a.size == "cpu":
    c.train.image_size = (96, 176)    # Training resolution (frames are 240x427), as STCN's preset.
    c.clip.max_objects = 1            # DAVIS 2016: one object per video.
    c.clip.max_gap = 5                # T + 1 = 4 frames span up to 15 frames.
    c.train.num_steps = 600           # Outer steps (BENCHMARKS.md compares variants at 250: benchmarks/oneshot_davis16.sh).
    c.train.batch_size = 4
    c.train.log_every = 25
    c.train.checkpoint_every = 100
    c.loss.start_step, c.loss.end_step = 100, 400
    c.pretrain.synthetic_steps = 1000 # As STCN's preset: synthetic videos, fully labelled (free), first.
  del c.model  # No FCN model and no fine-tuning; only the annotated frames.
  c.finetune = stcn.eval_frames_config()
  return c
