"""Where an evaluation run's masks are wrong: false positives vs misses.

Per video and object, over the frames DAVIS scores (1..T-2) that were not
given to the model: pixels predicted right (TP), predicted but not there
(FP) and there but missed (FN), the share of the errors that are false
positives, and J on frames 1-3 (right after the annotated frame, where a
model fine-tuned on frame 0 should be at its best). FP much larger than FN
says the masks are too large (a threshold or calibration problem); both
large says the errors are in the wrong places.

A second table follows each object through time: the scored frames cut in
five equal parts, J and the false-positive share of the errors in each. A J
that falls from the first fifth to the last, with misses growing, says the
model recognises the object as it looked when annotated but not as it
changes (pose, scale, view): a generalisation limit, not a fitting one.

  python -m benchmarks.error_breakdown runs/W1 [runs/W2 ...]
"""

import os
import sys

import numpy as np

from benchmarks import score_unannotated
from metavos.metrics import davis

FIFTHS = 5


def breakdown(workdir: str) -> list[dict]:
  rows = []
  for video, pred, given in score_unannotated.run_videos(workdir):
    scored = [t for t in range(1, video.num_frames - 1)
              if t not in set(given) | {0}]
    for obj in video.object_ids:
      gt, pr = video.masks[scored] == obj, pred[scored] == obj
      tp, fp, fn = (int((gt & pr).sum()), int((~gt & pr).sum()),
                    int((gt & ~pr).sum()))
      j = davis.db_eval_iou(gt, pr)  # per scored frame
      early = [j[i] for i, t in enumerate(scored) if t in (1, 2, 3)]
      parts = np.array_split(np.arange(len(scored)), FIFTHS)
      rows.append({"video": video.name, "object": int(obj), "TP": tp,
                   "FP": fp, "FN": fn,
                   "FP share": fp / max(fp + fn, 1),
                   "J frames 1-3": float(np.mean(early)) if early else None,
                   "J by fifth": [float(np.mean(j[p])) if len(p) else None
                                  for p in parts],
                   "FP share by fifth": [
                       int((~gt[p] & pr[p]).sum())
                       / max(int((gt[p] ^ pr[p]).sum()), 1)
                       if len(p) else None for p in parts]})
  return rows


def _cells(values) -> str:
  return " | ".join("" if v is None else f"{v:.2f}" for v in values)


def main(workdirs):
  print("| run | video | object | TP | FP | FN | FP share of errors "
        "| J frames 1-3 |")
  print("|---|---|---|---|---|---|---|---|")
  table = {w: breakdown(w) for w in workdirs}
  for w, rows in table.items():
    run = os.path.basename(w.rstrip("/"))
    for r in rows:
      early = ("" if r["J frames 1-3"] is None
               else f"{r['J frames 1-3']:.3f}")
      print(f"| {run} | {r['video']} | "
            f"{r['object']} | {r['TP']} | {r['FP']} | {r['FN']} | "
            f"{r['FP share']:.2f} | {early} |")
    fp, fn = sum(r["FP"] for r in rows), sum(r["FN"] for r in rows)
    print(f"| {run} | all | | "
          f"{sum(r['TP'] for r in rows)} | {fp} | {fn} | "
          f"{fp / max(fp + fn, 1):.2f} | |")
  fifths = " | ".join(f"{k + 1}/{FIFTHS}" for k in range(FIFTHS))
  print(f"\n| run | video | object | J by fifth of the video: {fifths} "
        f"| FP share of errors: {fifths} |")
  print("|---|---|---|" + "---|" * (2 * FIFTHS))
  for w, rows in table.items():
    run = os.path.basename(w.rstrip("/"))
    for r in rows:
      print(f"| {run} | {r['video']} | {r['object']} | "
            f"{_cells(r['J by fifth'])} | {_cells(r['FP share by fifth'])} |")


if __name__ == "__main__":
  main(sys.argv[1:])
