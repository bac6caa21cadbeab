#!/usr/bin/env bash
# The paper's protocol at CPU scale: supervised and one-shot training both
# start from the same static-image pre-training (STCN's stage 0), so the
# comparison is of the video training stage alone.
#
# Stage 0: supervised STCN on static clips (each clip one labelled frame
# repeated, motion from clip.augment's per-frame warps) of OTHER synthetic
# videos (data seed 1: an image set disjoint from the benchmark's videos,
# as STCN pre-trains on image datasets). Then benchmarks/oneshot_synthetic.sh
# (data seed 0) with --config.train.init_from=<stage 0 checkpoint>.
#
#   bash benchmarks/oneshot_synthetic_pretrained.sh [ROOT] [NUM_VIDEOS] [STEPS] [RUNS] [PRE_STEPS] [EXTRA]
#   bash benchmarks/oneshot_synthetic_pretrained.sh runs/synth_pre 120 500 "supervised t_step one_step" 300
set -euo pipefail
R=${1:-runs/synth_pre}
VIDEOS=${2:-120}
STEPS=${3:-500}
RUNS=${4:-supervised t_step one_step}
PRE_STEPS=${5:-300}
EXTRA=${6:-}
HERE=$(dirname "$0")
STATIC="--config.data.synthetic.seed=1 --config.clip.static_frames=True
  --config.clip.augment.enabled=True --config.clip.augment.frame_scale=0.15
  --config.clip.augment.frame_rotation_deg=15 --config.clip.augment.frame_shift=0.1"
# Stage 0 is the "supervised" run of its own root (scored on data seed 1's
# held-out videos: a sanity check only).
bash "$HERE/oneshot_synthetic.sh" "$R/stage0" "$VIDEOS" "$PRE_STEPS" supervised "$STATIC"
bash "$HERE/oneshot_synthetic.sh" "$R" "$VIDEOS" "$STEPS" "$RUNS" \
  "--config.train.init_from=$R/stage0/supervised/checkpoints $EXTRA"
