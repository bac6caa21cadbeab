#!/usr/bin/env bash
# Does training wait for data? The share of wall time the training loop spent
# waiting for the grain stream (`data_wait` in metrics.jsonl, one value per
# logged window), in the first logged windows of each davis16_cpu training
# recipe on real DAVIS 2016 240p (../shared), default loader (2 threads,
# 2 steps ahead). Each run is stopped after STEPS steps (its workdir in
# $R/<recipe>); the first window includes compilation. e-OSVOS and STCN skip
# their first stage (parent network, synthetic pre-training) so that the
# stage measured reads DAVIS: e-OSVOS tasks, STCN clips.
#
#   bash benchmarks/data_wait_davis16.sh /tmp/data_wait 30
set -euo pipefail
R=$1; STEPS=${2:-30}
mkdir -p "$R"
declare -A RECIPES=(
  [osvos_vgg16]="configs/osvos.py:davis16_cpu,backbone=vgg16"
  [eosvos]="configs/eosvos.py:davis16_cpu --config.parent.num_steps=0"
  [stcn]="configs/stcn.py:davis16_cpu --config.pretrain.synthetic_steps=0"
)
for name in ${NAMES:-osvos_vgg16 eosvos stcn}; do
  W="$R/$name"
  rm -rf "$W"
  # shellcheck disable=SC2086  # the recipe carries its own flags
  python -m metavos.main --config=${RECIPES[$name]} --workdir="$W" \
    --config.train.log_every=5 --config.train.checkpoint_every=1000 \
    >"$W.out" 2>&1 &
  pid=$!
  # Wait for STEPS steps in the (first) training stage's metrics, then stop.
  until find "$W" -name metrics.jsonl -exec grep -l "\"step\": $STEPS," {} + \
          2>/dev/null | grep -q .; do
    kill -0 $pid 2>/dev/null || { echo "$name exited early"; tail "$W.out"; break; }
    sleep 5
  done
  kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  python - "$W" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).rglob("metrics.jsonl")):
  rows = [json.loads(l) for l in f.read_text().splitlines()]
  waits = [(r["step"], round(r["data_wait"], 4)) for r in rows if "data_wait" in r]
  print(f"{f.parent}: data_wait per window (step, share): {waits}")
PY
done
