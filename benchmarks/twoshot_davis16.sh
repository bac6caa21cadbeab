#!/usr/bin/env bash
# Two-shot VOS on the real DAVIS 2016 240p videos (configs/twoshot.py:
# davis16_cpu): 2 random labelled frames per train-no-dev video, phase 1
# (warm-up + EMA teacher), pseudo-labels, phase 2, evaluated on dev. Then the
# pseudo-labels are scored against the real train-no-dev masks with the
# official scorer (a cross-check of the in-run pseudo_label_metrics.json),
# and a table compares dev J&F with the supervised / one-shot runs given.
#
#   bash benchmarks/twoshot_davis16.sh runs/twoshot_davis16 [OTHER_RUN ...]
#
# OTHER_RUN: workdirs of runs with the same network (e.g. runs/stcn_davis16,
# runs/oneshot_davis16) whose metrics.json is added to the table.
# Since session 7 the preset starts from a synthetic pre-training stage
# (pretrain.synthetic_steps); the session-3 rows of BENCHMARKS.md ran
# without it: run the twoshot command below with
# --config.pretrain.synthetic_steps=0 to reproduce them.
set -euo pipefail
W=${1:-runs/twoshot_davis16}
shift || true
DATA=${DAVIS16_ROOT:-$(python -c \
  "from configs import common; print(common.DAVIS16_240P)")}
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$W/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
mkdir -p "$W"
[ -f "$W/metrics.json" ] || python -m metavos.main \
  --config=configs/twoshot.py:davis16_cpu --workdir="$W" \
  --config.data.root="$DATA" >"$W/run.log" 2>&1
python -m metavos.evaluate --results_dir="$W/pseudo_labels/Annotations/240p" \
  --data_root="$DATA" --year=2016 --split=train-no-dev --resolution=240p \
  --output="$W/pseudo_eval/metrics.json" >"$W/pseudo_eval.log" 2>&1
python - "$W" "$@" <<'PY'
import json, os, sys
from metavos.runtime import metric_writer

def jf(path):
  if not os.path.exists(path):
    return None
  return json.load(open(path))["global"]["J&F-Mean"]

def fraction(run):
  for sub in ("phase1", ""):
    lines = metric_writer.read_metrics(os.path.join(run, sub, "metrics.jsonl"))
    if lines:
      return lines[-1].get("labelled_fraction")
  return None

two, others = sys.argv[1], sys.argv[2:]
print(f"{'run':<34} {'dev J&F':>8} {'labelled':>9} {'pseudo-label J&F':>17}")
for run in [two] + others:
  dev = jf(os.path.join(run, "metrics.json"))
  frac = fraction(run)
  pseudo = jf(os.path.join(run, "pseudo_eval", "metrics.json"))
  cell = lambda x: "-" if x is None else f"{x:.4f}"
  print(f"{run:<34} {cell(dev):>8} {cell(frac):>9} {cell(pseudo):>17}")
PY
