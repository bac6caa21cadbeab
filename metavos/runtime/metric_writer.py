"""Metrics you can read back: config.json, JSON lines, TensorBoard, a log line.

Layout of a workdir:

  config.json            the run's config, written once per run
  metrics.jsonl          one `{"step": ..., "<name>": ...}` object per line
  tensorboard/events.*   the same scalars for TensorBoard (tensorboardX, no
                         TensorFlow; it writes characters TensorBoard tags
                         do not allow as "_": eval/J&F shows as eval/J_F)

Read the metrics back with
`[json.loads(line) for line in open(workdir / "metrics.jsonl")]`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
import tensorboardX

from metavos.runtime import files
from metavos.runtime import progress as progress_lib

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def json_default(obj: Any) -> Any:
  """`json.dumps(default=...)` for configs and numpy/JAX values."""
  if hasattr(obj, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict.
    return obj.to_dict()
  if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, (set, frozenset)):
    return sorted(obj)
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  raise TypeError(f"{type(obj).__name__} is not JSON serialisable: {obj!r}")


def is_loss_like(name: str) -> bool:
  """The default NaN guard: metrics whose name mentions a loss."""
  return "loss" in name.lower()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads a metrics.jsonl file, skipping a torn last line left by a crash."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  lines = path.read_text(encoding="utf-8").splitlines()
  records = []
  for number, line in enumerate(lines, start=1):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if number == len(lines):
        break  # A crash mid-write; the step will be logged again.
      raise ValueError(f"{path}:{number}: not a JSON line: {line[:80]!r}. "
                       "Fix: delete or repair that line.") from None
  return records


def _as_float(name: str, value: Any, step: int) -> float:
  array = np.asarray(value)
  if array.size != 1:
    raise ValueError(f"Metric {name!r} at step {step} has shape {array.shape}; "
                     "write_scalars takes scalars. Fix: reduce it (e.g. mean) "
                     "before writing.")
  return float(array.reshape(()))


class MetricWriter:
  """Writes per-step scalars to JSON lines, TensorBoard and a progress line.

  Only process 0 writes files and prints; every process runs the NaN guard,
  so all of them stop together.

  Resuming: on the first `write_scalars` of a run, lines of an earlier run
  for steps this run computes again (after `start_step`, and from the first
  step written now) are dropped, so no step ever has two lines.
  """

  def __init__(self, workdir: str | os.PathLike, *,
               total_steps: int | None = None, tensorboard: bool = True,
               items_per_step: int | None = None,
               start_step: int | None = None,
               nan_guard: Callable[[str], bool] = is_loss_like,
               progress: progress_lib.Progress | None = None):
    """Initialises the writer.

    Args:
      workdir: the run's directory; created if missing.
      total_steps: the last step of the run, for the percentage and ETA.
      tensorboard: whether to mirror scalars to TensorBoard event files.
      items_per_step: examples (or frames) per step, to report items/s.
      start_step: the step this run starts from: the restored checkpoint's
        step, 0 for a fresh run. None: where the first `write_scalars` is.
      nan_guard: which metric names must be finite.
      progress: the reporter to use; by default one that reports every write.
    """
    self.workdir = pathlib.Path(workdir)
    self.metrics_path = self.workdir / METRICS_FILE
    self._is_writer = jax.process_index() == 0
    self._use_tensorboard = tensorboard
    self._items_per_step = items_per_step
    self._start_step = start_step
    self._nan_guard = nan_guard
    self._progress = progress or progress_lib.Progress(
        total_steps, name="train", every_seconds=0.0,
        start_step=start_step or 0)
    self._started = False
    self._last_step = start_step
    self._metrics_file = None
    self._events: tensorboardX.SummaryWriter | None = None

  def write_config(self, config: Any) -> None:
    """Writes `config` (a ConfigDict or a dict) to config.json, atomically."""
    if not self._is_writer:
      return
    text = json.dumps(config, default=json_default, indent=2, sort_keys=True)
    files.atomic_write_text(self.workdir / CONFIG_FILE, text + "\n")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Logs `scalars` at `step` everywhere; raises if a guarded one is NaN/Inf.

    Args:
      step: the training step the scalars belong to.
      scalars: metric name -> scalar (Python, numpy or a JAX array). JAX
        values are fetched here, which waits for the step to finish.

    Raises:
      FloatingPointError: a metric selected by `nan_guard` is NaN or Inf.
    """
    step = int(step)
    if "step" in scalars:
      raise ValueError("A metric may not be called 'step': the JSON lines use "
                       "that key for the step number. Fix: rename it.")
    values = {name: _as_float(name, value, step)
              for name, value in jax.device_get(dict(scalars)).items()}
    self._check_finite(step, values)
    if not self._started:
      self._start(step)
    items = None
    if self._items_per_step and self._last_step is not None:
      items = self._items_per_step * max(step - self._last_step, 0)
    self._last_step = step
    if not self._is_writer:
      return
    self._metrics_file.write(json.dumps({"step": step, **values}) + "\n")
    self._metrics_file.flush()
    if self._events is not None:
      for name, value in values.items():
        self._events.add_scalar(name, value, step)
      self._events.flush()
    extra = " ".join(f"{name}={value:.4g}" for name, value in values.items())
    self._progress.update(step, items=items or 0, extra=extra, force=True)

  def _check_finite(self, step: int, values: Mapping[str, float]) -> None:
    for name, value in values.items():
      if self._nan_guard(name) and not math.isfinite(value):
        raise FloatingPointError(
            f"{name} is {value} at step {step} (workdir {self.workdir}). "
            "Nothing was written for this step. Fix: lower the learning rate "
            "or check this step's inputs, then resume from the last "
            "checkpoint.")

  def _start(self, first_step: int) -> None:
    """Drops lines a resumed run will rewrite, then opens files for append."""
    self._started = True
    # The first step whose lines this run (re)writes.
    first_new = first_step
    if self._start_step is not None:
      first_new = min(first_step, self._start_step + 1)
    if not self._is_writer:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    if self.metrics_path.exists():
      # Rewritten even when no line is dropped, to remove a torn last line.
      kept = [r for r in read_metrics(self.metrics_path)
              if r.get("step", -1) < first_new]
      files.atomic_write_text(
          self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
    # An append-only log: each line is written whole and flushed.
    self._metrics_file = open(self.metrics_path, "a", encoding="utf-8")
    if self._use_tensorboard:
      # purge_step: TensorBoard hides the events of steps >= first_new that
      # an interrupted earlier run wrote (a SessionLog START at that step).
      # The suffix keeps two runs started in the same second (file names
      # hold whole seconds) from writing one file.
      self._events = tensorboardX.SummaryWriter(
          str(self.workdir / TENSORBOARD_DIR), purge_step=first_new,
          filename_suffix=f".{time.time_ns()}")

  def flush(self) -> None:
    if self._metrics_file is not None:
      self._metrics_file.flush()

  def close(self) -> None:
    if self._metrics_file is not None:
      self._metrics_file.close()
      self._metrics_file = None
    if self._events is not None:
      self._events.close()
      self._events = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
