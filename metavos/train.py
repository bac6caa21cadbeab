"""`train_and_evaluate(config, workdir)`: the library entry point (Colab too).

    from configs import eosvos
    from metavos import train
    train.train_and_evaluate(eosvos.get_config("smoke"), "/tmp/run")
"""

from __future__ import annotations

import os

import ml_collections

from metavos.methods import registry

MODES = ("train", "evaluate")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs `config.method` in `config.mode` with outputs under `workdir`.

  Returns:
    The evaluation metrics dict (DAVIS JSON shape), {} when nothing was scored.
  """
  if config.mode not in MODES:
    raise ValueError(f"config.mode must be one of {MODES}, got "
                     f"{config.mode!r}.")
  os.makedirs(workdir, exist_ok=True)
  return registry.get(config.method)(config, workdir)
