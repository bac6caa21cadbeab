"""`train_and_evaluate(config, workdir)`: the library entry point (Colab too).

    from metavos import configs, train
    train.train_and_evaluate(configs.get_config("eosvos", "smoke"), "/tmp/run")
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections

from metavos.methods import eval_loop, registry, validate
from metavos.runtime import files, metric_writer

MODES = ("train", "evaluate")
EVAL_CONFIG_FILE = "eval_config.json"  # the config of a mode=evaluate run


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Runs `config.method` in `config.mode` with outputs under `workdir`:
  trains (mode "train"), then evaluates the trained segmenter on
  `config.data.split`; the same path for every method (see
  metavos.methods.registry for what a method provides).

  Returns:
    The evaluation metrics dict (DAVIS JSON shape), {} when nothing was scored.
  """
  if config.mode not in MODES:
    raise ValueError(f"config.mode must be one of {MODES}, got "
                     f"{config.mode!r}.")
  # Everything the run will read, checked before anything is compiled.
  validate.validate(config, workdir)
  if config.mode == "evaluate" and jax.process_index() == 0:
    # An evaluation is recorded apart from the training run's config.json,
    # which it must not overwrite (the same workdir may hold both).
    files.atomic_write_text(
        os.path.join(workdir, EVAL_CONFIG_FILE),
        json.dumps(config.to_dict(), default=metric_writer.json_default,
                   indent=2, sort_keys=True) + "\n")
  method = registry.get(config.method)
  trained = None
  if config.mode == "train":
    trained = method.train(config, workdir)
    if trained is registry.NOT_EVALUATED:
      return {}
  return eval_loop.evaluate(config, workdir,
                            method.load_segmenter(config, workdir, trained))


def describe_outputs(workdir: str, metrics: dict) -> str:
  """A closing summary naming where the run's outputs are."""
  lines = [f"Outputs in {os.path.abspath(workdir)}:"]
  for name, what in [("results", "segmentations (DAVIS palette PNGs)"),
                     ("metrics.json", "DAVIS J&F"),
                     ("metrics.jsonl", "training metrics, one JSON line per step"),
                     ("timing.json", "seconds and frames per second per video"),
                     ("submission", "YouTube-VOS submission.zip for the official server"),
                     ("report.html", "one page: overlay GIFs, J per frame, metrics table"),
                     ("pictures", "overlay GIFs and J-per-frame plots per video"),
                     ("tensorboard", "TensorBoard event files"),
                     ("checkpoints", "Orbax checkpoints"),
                     ("config.json", "the config of the training run"),
                     (EVAL_CONFIG_FILE, "the config of the evaluation")]:
    if os.path.exists(os.path.join(workdir, name)):
      lines.append(f"  {name:<16} {what}")
  if metrics:
    g = metrics["global"]
    lines.append(f"J&F-Mean {g['J&F-Mean']:.4f}  J-Mean {g['J-Mean']:.4f}  "
                 f"F-Mean {g['F-Mean']:.4f}")
  return "\n".join(lines)
