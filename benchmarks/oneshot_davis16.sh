#!/usr/bin/env bash
# One-shot training against supervised STCN on the real DAVIS 2016 240p
# videos (train on train-no-dev, score dev), on this 2-core CPU box:
#   supervised  configs/stcn.py:davis16_cpu     every annotated frame labelled
#   t_step      configs/oneshot.py:davis16_cpu  one labelled frame per video
#               (a random one since session 6; earlier rows: the first,
#               --config.labels.kind=first)
#   one_step    the same, 1-step backward
#   two_step    the same, 2-step backward through a random frame
# All runs take the same number of steps (the cosine schedule ends there)
# and start from one synthetic pre-training stage (the presets'
# pretrain.synthetic_steps, since session 7), trained once in ROOT/pretrain
# by the first run that needs it; the rows of BENCHMARKS.md from earlier
# sessions started from a random init: add --config.pretrain.synthetic_steps=0.
# Then a table: J&F, labelled fraction (from metrics.jsonl), median fps.
#
#   bash benchmarks/oneshot_davis16.sh [ROOT] [STEPS] [RUNS] [EXTRA FLAGS]
#   bash benchmarks/oneshot_davis16.sh runs/oneshot16 250 "supervised t_step"
#   bash benchmarks/oneshot_davis16.sh runs/oneshot16_aug 250 "supervised one_step" \
#     "--config.clip.augment.enabled=True"     # flags added to every run
#
# A run whose metrics.json exists is skipped, an interrupted one resumes from
# its checkpoints; two instances with disjoint RUNS can share the CPU.
set -euo pipefail
R=${1:-runs/oneshot16}
STEPS=${2:-250}
RUNS=${3:-supervised t_step one_step two_step}
EXTRA=${4:-}
MAIN="nice -n 10 python -m metavos.main"
mkdir -p "$R"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$R/oneshot.log"; }
COMMON="--config.train.num_steps=$STEPS --config.train.checkpoint_every=50
  --config.pretrain.workdir=$R/pretrain $EXTRA"

for RUN in $RUNS; do
  W="$R/$RUN"
  [ -f "$W/metrics.json" ] && continue
  log "$RUN: $STEPS steps"
  if [ "$RUN" = supervised ]; then
    $MAIN --config=configs/stcn.py:davis16_cpu --workdir="$W" $COMMON \
      --config.loss.start_step=$((STEPS / 6)) --config.loss.end_step=$((STEPS * 2 / 3)) \
      >"$W.out" 2>&1
  else
    $MAIN --config=configs/oneshot.py:davis16_cpu --workdir="$W" $COMMON \
      --config.loss.start_step=$((STEPS / 6)) --config.loss.end_step=$((STEPS * 2 / 3)) \
      --config.oneshot.variant="$RUN" >"$W.out" 2>&1
  fi
  log "$RUN: done"
done

python benchmarks/oneshot_table.py "$R"
