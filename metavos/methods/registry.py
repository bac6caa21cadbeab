"""Methods by name, and the protocol every method module follows.

A method module provides only what it alone knows:

  train(config, workdir) -> trained
      Trains (resuming from the workdir's checkpoints) and returns what
      `load_segmenter` needs to evaluate without reading them back (e.g.
      `(params, model)`), or `NOT_EVALUATED` when the run's stage trains
      nothing to evaluate (two-shot stages before phase 2).
  load_segmenter(config, workdir, trained=None) -> segmenter
      An object with `segment(video, rng, annotated_frames=None) ->
      (pred, stats)` (metavos.methods.eval_loop.Segmenter); with
      `trained=None` the parameters are restored from the workdir's
      checkpoints, else `config.restore`.

Optional: `trained_checkpoint(config, workdir)`, where the method's
evaluated checkpoints live when not in `<workdir>/checkpoints` (two-shot's
phase 2); `trained_checkpoint` below falls back to the shared rule.

Everything else is shared: `metavos.train.train_and_evaluate` runs every
method, `eval_loop.evaluate` scores every method's segmenter (annotated
frames, pictures, timing, metrics), `train_loop.run` trains every method's
update, `metavos.segment` and `metavos.suggest_frames` use `load_segmenter`.
"""

from __future__ import annotations

import importlib
import types

from metavos.methods import setup

# name -> module following the protocol above; imported lazily so a
# method's dependencies load only when it runs.
METHODS = {
    "eosvos": "metavos.methods.eosvos",
    "oneshot": "metavos.methods.oneshot",
    "osvos": "metavos.methods.osvos",
    "stcn": "metavos.methods.stcn",
    "twoshot": "metavos.methods.twoshot",
}
PROTOCOL = ("train", "load_segmenter")

# What `train` returns for a run that trains nothing to evaluate.
NOT_EVALUATED = object()


def get(name: str) -> types.ModuleType:
  """The module of method `name` (`config.method`)."""
  if name not in METHODS:
    raise ValueError(f"Unknown config.method {name!r}; available: "
                     f"{sorted(METHODS)}.")
  module = importlib.import_module(METHODS[name])
  missing = [f for f in PROTOCOL if not callable(getattr(module, f, None))]
  if missing:
    raise TypeError(f"Method {name!r} ({METHODS[name]}) lacks {missing} of "
                    f"the method protocol {PROTOCOL} "
                    "(metavos.methods.registry).")
  return module


def load_segmenter(name: str):
  """The `load_segmenter(config, workdir, trained=None)` of method `name`."""
  return get(name).load_segmenter


def trained_checkpoint(config, workdir: str) -> str:
  """The checkpoints that `config.method` evaluates from `workdir` (its
  own `trained_checkpoint`, else metavos.methods.setup's rule)."""
  own = getattr(get(config.method), "trained_checkpoint", None)
  return (own or setup.trained_checkpoint)(config, workdir)
