"""Table of J&F and speed over run directories (metrics.json, timing.json).

  python benchmarks/summarize_runs.py runs/davis16
"""

import json
import os
import sys


def main(root: str):
  rows = []
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name, "metrics.json")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      g = json.load(f)["global"]
    fps = ""
    timing = os.path.join(root, name, "timing.json")
    if os.path.exists(timing):
      with open(timing) as f:
        t = json.load(f)
      videos = t["videos"].values()
      median = lambda xs: sorted(xs)[len(xs) // 2]
      ft = median([v["finetune_seconds"] for v in videos])
      # Inference = everything but fine-tuning (online adaptation included).
      inf = median([v["seconds"] - v["finetune_seconds"] for v in videos])
      fps = f"{t['median_fps']:.2f} | {ft:.1f} | {inf:.1f}"
    rows.append(f"| {name} | {g['J&F-Mean']:.4f} | {g['J-Mean']:.4f} | "
                f"{g['F-Mean']:.4f} | {fps} |")
  print("| run | J&F | J | F | median fps | median fine-tune s | "
        "median inference s |")
  print("|---|---|---|---|---|---|---|")
  print("\n".join(rows))


if __name__ == "__main__":
  main(sys.argv[1])
