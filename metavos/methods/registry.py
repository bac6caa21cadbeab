"""Methods by name: `config.method` selects one `train_and_evaluate`."""

from __future__ import annotations

import importlib
from typing import Callable

# name -> module with `train_and_evaluate(config, workdir)`; imported lazily
# so a method's dependencies load only when it runs.
METHODS = {
    "eosvos": "metavos.methods.eosvos",
    "oneshot": "metavos.methods.oneshot",
    "osvos": "metavos.methods.osvos",
    "stcn": "metavos.methods.stcn",
    "twoshot": "metavos.methods.twoshot",
}


def get(name: str) -> Callable:
  if name not in METHODS:
    raise ValueError(f"Unknown config.method {name!r}; available: "
                     f"{sorted(METHODS)}.")
  return importlib.import_module(METHODS[name]).train_and_evaluate


def load_segmenter(name: str) -> Callable:
  """The method's `load_segmenter(config, workdir, ...)`.

  It returns an object with `segment(video, rng, annotated_frames=None) ->
  (pred, stats)` (see metavos.finetune.video.BoundSegmenter); used to
  segment single videos (metavos.segment).
  """
  if name not in METHODS:
    raise ValueError(f"Unknown config.method {name!r}; available: "
                     f"{sorted(METHODS)}.")
  module = importlib.import_module(METHODS[name])
  if not hasattr(module, "load_segmenter"):
    raise ValueError(f"Method {name!r} ({METHODS[name]}) has no "
                     "load_segmenter(config, workdir): it cannot segment a "
                     "single video yet.")
  return module.load_segmenter
