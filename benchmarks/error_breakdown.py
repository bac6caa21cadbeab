"""Where an evaluation run's masks are wrong: false positives vs misses.

Per video and object, over the frames DAVIS scores (1..T-2) that were not
given to the model: pixels predicted right (TP), predicted but not there
(FP) and there but missed (FN), the share of the errors that are false
positives, and J on frames 1-3 (right after the annotated frame, where a
model fine-tuned on frame 0 should be at its best). FP much larger than FN
says the masks are too large (a threshold or calibration problem); both
large says the errors are in the wrong places.

  python -m benchmarks.error_breakdown runs/W1 [runs/W2 ...]
"""

import os
import sys

import numpy as np

from benchmarks import score_unannotated


def breakdown(workdir: str) -> list[dict]:
  rows = []
  for video, pred, given in score_unannotated.run_videos(workdir):
    scored = [t for t in range(1, video.num_frames - 1)
              if t not in set(given) | {0}]
    for obj in video.object_ids:
      gt, pr = video.masks[scored] == obj, pred[scored] == obj
      tp, fp, fn = (int((gt & pr).sum()), int((~gt & pr).sum()),
                    int((gt & ~pr).sum()))
      early = []
      for t in [t for t in (1, 2, 3) if t in scored]:
        g, p = video.masks[t] == obj, pred[t] == obj
        union = (g | p).sum()
        early.append(1.0 if union == 0 else (g & p).sum() / union)
      rows.append({"video": video.name, "object": int(obj), "TP": tp,
                   "FP": fp, "FN": fn,
                   "FP share": fp / max(fp + fn, 1),
                   "J frames 1-3": float(np.mean(early)) if early else None})
  return rows


def main(workdirs):
  print("| run | video | object | TP | FP | FN | FP share of errors "
        "| J frames 1-3 |")
  print("|---|---|---|---|---|---|---|---|")
  for w in workdirs:
    rows = breakdown(w)
    for r in rows:
      early = ("" if r["J frames 1-3"] is None
               else f"{r['J frames 1-3']:.3f}")
      print(f"| {os.path.basename(w.rstrip('/'))} | {r['video']} | "
            f"{r['object']} | {r['TP']} | {r['FP']} | {r['FN']} | "
            f"{r['FP share']:.2f} | {early} |")
    fp, fn = sum(r["FP"] for r in rows), sum(r["FN"] for r in rows)
    print(f"| {os.path.basename(w.rstrip('/'))} | all | | "
          f"{sum(r['TP'] for r in rows)} | {fp} | {fn} | "
          f"{fp / max(fp + fn, 1):.2f} | |")


if __name__ == "__main__":
  main(sys.argv[1:])
