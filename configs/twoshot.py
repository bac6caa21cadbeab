r"""Two-shot VOS (Yan et al., CVPR 2023): two labelled frames per training
video, an EMA teacher, pseudo-labels, then training on every frame.

The network, clips, optimiser and loss are STCN's (configs/stcn.py), so its
J&F compares like for like with supervised STCN; only the label set (2
random frames per video by default) and the `twoshot` block differ.

Smoke test (synthetic videos, all three stages, seconds on CPU):

  python -m metavos.main --config=configs/twoshot.py:smoke --workdir=runs/twoshot_smoke

Real DAVIS 2016 240p train-no-dev, evaluated on dev (2 CPU cores; see
benchmarks/twoshot_davis16.sh for the benchmark):

  python -m metavos.main --config=configs/twoshot.py:davis16_cpu --workdir=runs/twoshot_davis16

The stages one at a time (each reads the previous one's outputs in the
workdir, or in --config.twoshot.from_workdir=<earlier run>):

  python -m metavos.main --config=configs/twoshot.py:davis16_cpu --workdir=W --config.twoshot.stage=phase1
  python -m metavos.main --config=configs/twoshot.py:davis16_cpu --workdir=W --config.twoshot.stage=pseudo
  python -m metavos.main --config=configs/twoshot.py:davis16_cpu --workdir=W --config.twoshot.stage=phase2

Real labels kept in phase 1 after the warm-up (2 labelled pairs beside the
teacher's clips in every batch; off by default, the published method;
BENCHMARKS.md measures it on both networks: two seeds of the STCN-like
one, one of the XMem-style one):

  ... --config.twoshot.anchor_pairs=2

A hand-written label set (JSON {"bear": [0, 40], ...}):

  ... --config.labels.kind=file --config.labels.file=my_labels.json

Score the pseudo-labels against the real masks of the training videos:

  python -m metavos.evaluate --results_dir=W/pseudo_labels/Annotations/240p \
    --data_root=../shared/datasets/DAVIS2016-train-240p --year=2016 \
    --split=train-no-dev --resolution=240p --output=W/pseudo_eval/metrics.json
"""

import ml_collections

from metavos.configs import common, stcn


def twoshot_config() -> ml_collections.ConfigDict:
  """The stages and their thresholds (metavos.methods.twoshot)."""
  t = ml_collections.ConfigDict()
  t.stage = "all"                 # "all" | "phase1" | "pseudo" | "phase2".
  t.from_workdir = ""             # Earlier two-shot run whose phase1/, labels.json, pseudo_labels/ later stages read; "" = this workdir.
  t.warmup_steps = 300            # Phase 1: supervised pairs of labelled frames until this step, then the teacher.
  t.teacher_threshold = 0.9       # Phase 1: teacher pseudo-labels where its top probability is >= this.
  t.ema_max = 0.995               # Teacher decay: min(1 - 1/(t+1), ema_max).
  t.anchor_pairs = 0              # Phase 1 after warm-up: labelled pairs (the warm-up's clips) added to every batch beside the teacher's clips; 0 = none. A multiple of the devices, like train.batch_size.
  t.teacher_memory = True         # Phase 1: unlabelled frames enter the student's memory with the teacher's masks.
  t.pseudo_model = "teacher"      # Intermediate inference with the phase-1 "teacher" (EMA) or student ("params").
  t.pseudo_score_root = ""        # Dataset root with the real masks to score pseudo-labels against; "" = data.root (skipped if sparse).
  t.phase2_steps = 1000           # Phase 2 training steps (config.train.num_steps is phase 1's).
  t.phase2_init = "phase1"        # Phase 2 starts from the phase-1 student ("phase1") or afresh ("scratch").
  t.self_label_step = 500         # Phase 2: from this step on, confident student predictions replace pseudo-labels.
  t.self_label_threshold = 0.99   # Phase 2: ... where the student's top probability is >= this.
  return t


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the two-shot config; arg as configs/stcn.py's."""
  a = common.parse_arg(arg, file="configs/twoshot.py", aliases=stcn.RECIPES,
                       **stcn.AXES)
  # STCN's config for the same axes: data, network, clips, optimiser,
  # bootstrapped loss and test-time propagation.
  c = stcn.get_config(f"size={a.size},data={a.data},network={a.network}")
  c.method = "twoshot"
  c.labels.kind = "random"        # Two labelled frames per training video, drawn with labels.seed.
  c.labels.per_video = 2
  c.twoshot = twoshot_config()
  t = c.twoshot
  if a.size == "smoke":
    c.train.num_steps = 3         # Phase 1: 1 warm-up step, 2 teacher steps.
    t.warmup_steps = 1
    t.phase2_steps = 2
    t.self_label_step = 1
  elif a.size == "cpu":
    # Sized to finish in about 30 minutes on a shared 2-core CPU
    # (benchmarks/twoshot_davis16.sh); STCN's davis16_cpu trains 2000 steps.
    c.train.num_steps = 400       # Phase 1 steps, warm-up included.
    t.warmup_steps = 150
    t.phase2_steps = 300
    t.self_label_step = 150
    c.train.checkpoint_every = 100
    c.loss.start_step, c.loss.end_step = 50, 300  # Bootstrapping, per stage.
  return c
