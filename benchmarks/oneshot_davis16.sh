#!/usr/bin/env bash
# One-shot training against supervised STCN on the real DAVIS 2016 240p
# videos (train on train-no-dev, score dev), on this 2-core CPU box:
#   supervised  configs/stcn.py:davis16_cpu     every annotated frame labelled
#   t_step      configs/oneshot.py:davis16_cpu  first frame of each video only
#   one_step    the same, 1-step backward
#   two_step    the same, 2-step backward through a random frame
# All runs take the same number of steps (the cosine schedule ends there).
# Then a table: J&F, labelled fraction (from metrics.jsonl), median fps.
#
#   bash benchmarks/oneshot_davis16.sh [ROOT] [STEPS] [RUNS]
#   bash benchmarks/oneshot_davis16.sh runs/oneshot16 250 "supervised t_step"
#
# A run whose metrics.json exists is skipped, an interrupted one resumes from
# its checkpoints; two instances with disjoint RUNS can share the CPU.
set -euo pipefail
R=${1:-runs/oneshot16}
STEPS=${2:-250}
RUNS=${3:-supervised t_step one_step two_step}
MAIN="nice -n 10 python -m metavos.main"
mkdir -p "$R"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$R/oneshot.log"; }
COMMON="--config.train.num_steps=$STEPS --config.train.checkpoint_every=50"

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

python - "$R" <<'PY'
import datetime, json, os, re, sys
root = sys.argv[1]


def seconds_per_step(out):
  """From the progress lines of the run's log, excluding the first logged
  interval (compilation)."""
  marks = []
  for line in open(out):
    m = re.search(r"(\d\d:\d\d:\d\d\.\d+) .*train (\d+)/\d+", line)
    if m:
      t = datetime.datetime.strptime(m.group(1), "%H:%M:%S.%f")
      marks.append((t, int(m.group(2))))
  if len(marks) < 2:
    return ""
  (t0, s0), (t1, s1) = marks[0], marks[-1]
  return f"{(t1 - t0).total_seconds() % 86400 / max(s1 - s0, 1):.2f}"


print("| run | J&F | J | F | labelled fraction | median fps | train s/step |")
print("|---|---|---|---|---|---|---|")
for name in ("supervised", "t_step", "one_step", "two_step"):
  w = os.path.join(root, name)
  if not os.path.exists(os.path.join(w, "metrics.json")):
    print(f"| {name} | not run | | | | | |")
    continue
  g = json.load(open(os.path.join(w, "metrics.json")))["global"]
  lines = [json.loads(x) for x in open(os.path.join(w, "metrics.jsonl"))]
  t = json.load(open(os.path.join(w, "timing.json")))
  per = seconds_per_step(w + ".out")
  print(f"| {name} | {g['J&F-Mean']:.4f} | {g['J-Mean']:.4f} | "
        f"{g['F-Mean']:.4f} | {lines[-1]['labelled_fraction']:.4f} | "
        f"{t['median_fps']:.2f} | {per} |")
PY
