"""J&F of evaluation runs over the frames that were not given to the model.

With N > 1 annotated frames the evaluation writes the given masks for those
frames, which the DAVIS score would count as perfect frames. This recomputes
J and F (official per-frame measures, frames 1..T-2) leaving out every
annotated frame, so 1, 2 and 4 annotated frames are compared on what the
model predicted.

  python benchmarks/score_unannotated.py runs/davis16/frames*_osvos
"""

import json
import os
import sys

import numpy as np

from metavos.data import datasets, io
from metavos.finetune import suggest
from metavos.metrics import davis as davis_metrics


def object_scores(video, pred: np.ndarray, given) -> tuple[list, list]:
  """Per-object mean J and F over frames 1..T-2 that are not in `given`
  (frame 0 is always given)."""
  given = set(given) | {0}
  result = davis_metrics.evaluate_video(video.masks, pred, video.object_ids)
  keep = np.array([t not in given for t in range(1, video.num_frames - 1)])
  return ([float(np.mean(o["J"][keep])) for o in result.values()],
          [float(np.mean(o["F"][keep])) for o in result.values()])


def run_videos(workdir: str):
  """Yields (video, predicted ids (T, H, W), annotated frames) for every
  video an evaluation run in `workdir` segmented (its own dataset config)."""
  path = os.path.join(workdir, "eval_config.json")  # mode=evaluate runs
  if not os.path.exists(path):
    path = os.path.join(workdir, "config.json")
  with open(path) as f:
    config = json.load(f)
  d, ft = config["data"], config["finetune"]
  ds = datasets.get_dataset(d["kind"], d["root"], year=d["year"],
                            split=d["split"], resolution=d["resolution"])
  for name in ds.sequences:
    video = ds.load(name)
    given = ft["annotated_frames"] or suggest.evenly_spaced(
        video.num_frames, max(1, ft["num_annotated"]), 0)
    pred = np.stack([io.read_mask(os.path.join(workdir, "results", name,
                                               f"{n}.png"))
                     for n in video.frame_names])
    yield video, pred, given


def score_run(workdir: str) -> dict:
  js, fs = [], []
  for video, pred, given in run_videos(workdir):
    j, f = object_scores(video, pred, given)
    js += j
    fs += f
  j, f = float(np.mean(js)), float(np.mean(fs))
  return {"J&F": (j + f) / 2, "J": j, "F": f}


def main(workdirs):
  print("| run | J&F (unannotated frames) | J | F | J&F (DAVIS, all frames) |")
  print("|---|---|---|---|---|")
  for w in workdirs:
    if not os.path.exists(os.path.join(w, "metrics.json")):
      continue
    s = score_run(w)
    with open(os.path.join(w, "metrics.json")) as f:
      official = json.load(f)["global"]["J&F-Mean"]
    print(f"| {os.path.basename(w)} | {s['J&F']:.4f} | {s['J']:.4f} | "
          f"{s['F']:.4f} | {official:.4f} |")


if __name__ == "__main__":
  main(sys.argv[1:])
