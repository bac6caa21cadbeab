#!/usr/bin/env bash
# e-OSVOS with the Mask R-CNN model against the FCN model on the real DAVIS
# 2016 240p videos (train on train-no-dev, report on dev), on this CPU box:
#   1. a parent network per model (OSVOS training on the foreground);
#   2. e-OSVOS meta-training from each parent (neuron-level rates);
#   3. dev J&F and fps at T = 10 (e-OSVOS-10), with online adaptation
#      (e-OSVOS-10-OnA: every 5 frames, 10 steps), and for the detector the
#      same two without bounding-box propagation.
# Then benchmarks/summarize_runs.py prints the table for BENCHMARKS.md.
#
#   bash benchmarks/maskrcnn_vs_fcn.sh runs/mrcnn_vs_fcn [PARENT_STEPS] [META_STEPS] [MAX_EVAL_VIDEOS]
set -euo pipefail
R=${1:-runs/mrcnn_vs_fcn}
PARENT_STEPS=${2:-4000}
META_STEPS=${3:-1000}
MAX_EVAL=${4:-0}
MAIN="python -m metavos.main"
mkdir -p "$R"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$R/bench.log"; }
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$R/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1

for MODEL in fcn maskrcnn; do
  PRESET=davis16_cpu; [ "$MODEL" = maskrcnn ] && PRESET=davis16_cpu,model=maskrcnn
  if [ ! -d "$R/${MODEL}_parent/checkpoints" ]; then
    log "$MODEL parent network ($PARENT_STEPS steps)"
    # The OSVOS trainer's parent loss goes through the model interface, so
    # the detector's parent is trained with its own loss on the foreground.
    $MAIN --config=configs/osvos.py:davis16_cpu --workdir="$R/${MODEL}_parent" \
      --config.model.name=$MODEL --config.parent.loss=lovasz_hinge \
      --config.train.num_steps="$PARENT_STEPS" --config.train.checkpoint_every="$PARENT_STEPS" \
      --config.data.max_eval_videos=1 >"$R/${MODEL}_parent.out" 2>&1
  fi
  if [ ! -d "$R/${MODEL}_meta/checkpoints" ]; then
    log "$MODEL e-OSVOS meta-training ($META_STEPS steps)"
    $MAIN --config=configs/eosvos.py:$PRESET --workdir="$R/${MODEL}_meta" \
      --config.meta.init_from="$R/${MODEL}_parent/checkpoints" \
      --config.train.num_steps="$META_STEPS" --config.train.checkpoint_every="$META_STEPS" \
      --config.data.max_eval_videos=1 >"$R/${MODEL}_meta.out" 2>&1
  fi
  VARIANTS="T10:0:True T10_OnA:5:True"
  [ "$MODEL" = maskrcnn ] && VARIANTS="$VARIANTS T10_noprop:0:False T10_OnA_noprop:5:False"
  for V in $VARIANTS; do
    IFS=: read -r NAME ONA PROP <<<"$V"
    OUT="$R/eval_${MODEL}_$NAME"
    [ -f "$OUT/metrics.json" ] && continue
    log "$MODEL $NAME"
    $MAIN --config=configs/eosvos.py:$PRESET --workdir="$OUT" --config.mode=evaluate \
      --config.restore="$R/${MODEL}_meta/checkpoints" \
      --config.finetune.online_interval=$ONA --config.model.maskrcnn.box_propagation=$PROP \
      --config.data.max_eval_videos="$MAX_EVAL" >"$OUT.out" 2>&1
  done
done
log "done"
python benchmarks/summarize_runs.py "$R" | tee "$R/summary.md"
