"""The trivial VOS baseline: every frame gets the first frame's masks.

A reference point for the methods' dev scores: a network that propagates
masks should beat copying the annotated mask unchanged, or it has learned
nothing about motion.

  python -m benchmarks.copy_first_mask [ROOT] [--year=2016] [--split=dev]
      [--resolution=240p]
"""

import argparse
import json

import numpy as np

from metavos.data import davis
from metavos.metrics import davis as davis_metrics

DEFAULT_ROOT = "../shared/datasets/DAVIS2016-train-240p"


def copy_first(video) -> np.ndarray:
  """(T, H, W) ids: each object's first annotated mask in every frame
  (objects first annotated later start empty, as DAVIS scores them)."""
  pred = np.zeros_like(video.masks)
  for obj, t0 in sorted(video.first_frame.items()):
    pred[:, video.masks[t0] == obj] = obj
  return pred


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("root", nargs="?", default=DEFAULT_ROOT)
  parser.add_argument("--year", type=int, default=2016)
  parser.add_argument("--split", default="dev")
  parser.add_argument("--resolution", default="240p")
  args = parser.parse_args(argv)
  ds = davis.DavisDataset(args.root, args.year, args.split, args.resolution)
  evaluator = davis_metrics.DavisEvaluator()
  for name in ds.sequences:
    video = ds.load(name)
    evaluator.add_video(name, video.masks, copy_first(video), video.object_ids)
  scores = evaluator.result()
  print(json.dumps({"split": args.split, **scores["global"],
                    "per_object_J": {k: round(v["J-Mean"], 4) for k, v in
                                     scores["per_object"].items()}}, indent=1))
  return scores


if __name__ == "__main__":
  main()
