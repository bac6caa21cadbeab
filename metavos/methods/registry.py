"""Methods by name: `config.method` selects one `train_and_evaluate`."""

from __future__ import annotations

import importlib
from typing import Callable

# name -> module with `train_and_evaluate(config, workdir)`; imported lazily
# so a method's dependencies load only when it runs.
METHODS = {
    "eosvos": "metavos.methods.eosvos",
    "osvos": "metavos.methods.osvos",
}


def get(name: str) -> Callable:
  if name not in METHODS:
    raise ValueError(f"Unknown config.method {name!r}; available: "
                     f"{sorted(METHODS)}.")
  return importlib.import_module(METHODS[name]).train_and_evaluate
