r"""Adapting K objects together (one vmapped call) vs K separate adaptations.

e-OSVOS-T fine-tuning of every object of a video is one jitted call vmapped
over objects (`metavos.finetune.video.VideoSegmenter.adapt`). This times it
for K = 1..4 objects against K sequential single-object adaptations (K x the
K = 1 time) and against `finetune.objects_per_call=1` (the same call loop
over objects inside `adapt`, the CPU default), on the davis16_cpu model ("small" FCN, 120x214, T = 10 steps,
3 augmented copies, neuron-level rates), each measured after its compile.
The issue's target: together costs at most 0.6 K of one.

  python -m benchmarks.bench_multi_object
  python -m benchmarks.bench_multi_object --max_objects=4 --steps=10 --repeats=3
"""

from __future__ import annotations

import argparse
import json

import jax
import ml_collections
import numpy as np
from flax import nnx

from benchmarks import common
from metavos import models
from metavos.finetune import lrs as lrs_lib
from metavos.finetune import video as video_lib


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--max_objects", type=int, default=4)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--height", type=int, default=120)
  parser.add_argument("--width", type=int, default=214)
  parser.add_argument("--backbone", default="small")
  args = parser.parse_args()
  cfg = ml_collections.ConfigDict(dict(name="fcn", backbone=args.backbone,
                                       fpn_dim=32, norm_groups=8,
                                       pretrained=""))
  graphdef, params = nnx.split(models.build_model(cfg, nnx.Rngs(0)),
                               nnx.Param)
  segmenters = {per_call: video_lib.VideoSegmenter(
      models.dense_model(models.make_apply_fn(graphdef)),
      video_lib.FinetuneConfig(
          num_steps=args.steps, copies=3, unroll=True,
          steps_per_call=args.steps, objects_per_call=per_call,
          augment=(("flip", True), ("max_rotation_deg", 30.0),
                   ("scale_range", (0.75, 1.25)))))
      for per_call in (0, 1)}
  lrs = lrs_lib.init_lrs(params, "neuron", 1e-3)
  rng = np.random.default_rng(0)
  h, w = args.height, args.width
  print(common.machine_line())
  times = {0: {}, 1: {}}
  for k in range(1, args.max_objects + 1):
    images = rng.random((k, 1, h, w, 3), np.float32)
    masks = (rng.random((k, 1, h, w)) > 0.7).astype(np.float32)
    valid = np.ones((k, 1, h, w), bool)
    stacked = video_lib._broadcast(params, k)  # pylint: disable=protected-access
    for per_call, seg in segmenters.items():
      fn = lambda: seg.adapt(stacked, lrs, images, masks, valid,
                             jax.random.key(0), args.steps)[0]
      times[per_call][k] = common.time_fn(fn, repeats=args.repeats, warmup=1)
  one = times[0][1]
  print("| K | vmapped s | one object per call s | K separate s | "
        "vmapped / (K x one) |")
  print("|---|---|---|---|---|")
  for k in times[0]:
    print(f"| {k} | {times[0][k]:.2f} | {times[1][k]:.2f} | {k * one:.2f} | "
          f"{times[0][k] / (k * one):.2f} |")
  print(json.dumps({str(p): t for p, t in times.items()}))


if __name__ == "__main__":
  main()
