"""The one-shot vs supervised table of a benchmark root (one run per folder:
supervised, t_step, one_step, two_step, twoshot): J&F, its ratio to the supervised
run, labelled fraction (from metrics.jsonl), median fps and training seconds
per step (from <run>.out).

  python benchmarks/oneshot_table.py runs/oneshot16

With several roots (the same runs with different seeds), one row per run:
each root's J&F, their mean and standard deviation, and the ratio of the
mean to the supervised mean:

  python benchmarks/oneshot_table.py runs/seeds/s0 runs/seeds/s1 runs/seeds/s2
"""

import datetime
import json
import os
import re
import statistics
import sys

RUNS = ("supervised", "t_step", "one_step", "two_step", "twoshot")


def seconds_per_step(out: str) -> str:
  """From the progress lines of the run's log, excluding the first logged
  interval (compilation)."""
  if not os.path.exists(out):
    return ""
  marks = []
  with open(out) as f:
    for line in f:
      m = re.search(r"(\d\d:\d\d:\d\d\.\d+) .*train (\d+)/\d+", line)
      if m:
        t = datetime.datetime.strptime(m.group(1), "%H:%M:%S.%f")
        marks.append((t, int(m.group(2))))
  if len(marks) < 2:
    return ""
  (t0, s0), (t1, s1) = marks[0], marks[-1]
  return f"{(t1 - t0).total_seconds() % 86400 / max(s1 - s0, 1):.2f}"


def main(root: str) -> None:
  print("| run | J&F | of supervised | J | F | labelled fraction | "
        "median fps | train s/step |")
  print("|---|---|---|---|---|---|---|---|")
  supervised = None
  for name in RUNS:
    w = os.path.join(root, name)
    if not os.path.exists(os.path.join(w, "metrics.json")):
      print(f"| {name} | not run | | | | | | |")
      continue
    with open(os.path.join(w, "metrics.json")) as f:
      g = json.load(f)["global"]
    # Two-shot logs its labelled fraction in phase 1.
    log = next(x for x in (os.path.join(w, "metrics.jsonl"),
                           os.path.join(w, "phase1", "metrics.jsonl"))
               if os.path.exists(x) or x.endswith("phase1/metrics.jsonl"))
    with open(log) as f:
      last = [json.loads(x) for x in f][-1]
    with open(os.path.join(w, "timing.json")) as f:
      fps = json.load(f)["median_fps"]
    if name == "supervised":
      supervised = g["J&F-Mean"]
    ratio = f"{g['J&F-Mean'] / supervised:.0%}" if supervised else ""
    print(f"| {name} | {g['J&F-Mean']:.4f} | {ratio} | {g['J-Mean']:.4f} | "
          f"{g['F-Mean']:.4f} | {last['labelled_fraction']:.4f} | "
          f"{fps:.2f} | {seconds_per_step(w + '.out')} |")


def jf(root: str, name: str) -> float | None:
  path = os.path.join(root, name, "metrics.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)["global"]["J&F-Mean"]


def over_seeds(roots: list[str]) -> None:
  """Mean and spread of each run's J&F over roots (seeds)."""
  print("| run | " + " | ".join(roots) + " | mean | std | mean of supervised |")
  print("|---|" + "---|" * (len(roots) + 3))
  supervised = None
  for name in RUNS:
    scores = [jf(r, name) for r in roots]
    done = [x for x in scores if x is not None]
    if not done:
      continue
    mean = statistics.mean(done)
    std = statistics.stdev(done) if len(done) > 1 else float("nan")
    if name == "supervised":
      supervised = mean
    ratio = f"{mean / supervised:.0%}" if supervised else ""
    cells = " | ".join("" if x is None else f"{x:.4f}" for x in scores)
    print(f"| {name} | {cells} | {mean:.4f} | {std:.4f} | {ratio} |")


if __name__ == "__main__":
  if len(sys.argv) > 2:
    over_seeds(sys.argv[1:])
  else:
    main(sys.argv[1])
