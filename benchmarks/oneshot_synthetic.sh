#!/usr/bin/env bash
# One-shot against supervised STCN with more training videos than DAVIS 2016
# has: synthetic videos (metavos.data.synthetic, made in each run's workdir,
# the same bytes for every run), one object each, 96x160, 16 frames; the
# first two thirds train, the last third is scored. Same network and step
# budget for both runs; one-shot sees one labelled frame of each video only
# (configs/oneshot.py's labels: a random annotated frame since session 6;
# the rows of BENCHMARKS.md run before that add --config.labels.kind=first).
#
#   bash benchmarks/oneshot_synthetic.sh [ROOT] [NUM_VIDEOS] [STEPS] [RUNS] [EXTRA FLAGS]
#   bash benchmarks/oneshot_synthetic.sh runs/synth_oneshot 120 500
#   bash benchmarks/oneshot_synthetic.sh runs/synth_oneshot 120 500 "t_step two_step"
#   bash benchmarks/oneshot_synthetic.sh runs/synth_aug 120 500 "supervised one_step" \
#     "--config.clip.augment.enabled=True"     # flags added to every run
#
# A run whose metrics.json exists is skipped; two instances with disjoint
# RUNS can share the CPU.
set -euo pipefail
R=${1:-runs/synth_oneshot}
VIDEOS=${2:-120}
STEPS=${3:-500}
RUNS=${4:-supervised one_step}
EXTRA=${5:-}
MAIN="nice -n 5 python -m metavos.main"
mkdir -p "$R"
COMMON="--config.data.synthetic.num_videos=$VIDEOS --config.data.synthetic.num_frames=16
  --config.data.synthetic.max_objects=1 --config.clip.max_objects=1
  --config.train.image_size=(96,160) --config.eval.input_size=(96,160)
  --config.train.num_steps=$STEPS --config.train.checkpoint_every=100
  --config.train.log_every=25 --config.loss.start_step=$((STEPS / 6))
  --config.loss.end_step=$((STEPS * 2 / 3)) --config.eval.pictures=False $EXTRA"

for RUN in $RUNS; do
  W="$R/$RUN"
  [ -f "$W/metrics.json" ] && continue
  echo "[$(date +%H:%M:%S)] $RUN: $STEPS steps, $VIDEOS videos"
  if [ "$RUN" = supervised ]; then
    $MAIN --config=configs/stcn.py --workdir="$W" $COMMON >"$W.out" 2>&1
  else
    $MAIN --config=configs/oneshot.py --workdir="$W" $COMMON \
      --config.clip.max_gap=5 --config.oneshot.variant="$RUN" >"$W.out" 2>&1
  fi
done

python benchmarks/oneshot_table.py "$R"
