"""A progress line with rate and ETA for any long loop.

Used by training, fine-tuning and evaluation alike:

  progress = Progress(total=len(videos), name="eval", unit="videos")
  for i, video in enumerate(videos, start=1):
    ...
    progress.update(i, items=video.num_frames)
  progress.finish()
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable

from absl import flags
from absl import logging


def default_printer(line: str) -> None:
  """Logs through absl under `app.run`, else prints to stderr.

  Outside `app.run` (notebooks, tests) absl drops INFO lines, and a progress
  line that nobody sees is worse than one without a timestamp.
  """
  if flags.FLAGS.is_parsed():
    logging.info(line)
  else:
    print(line, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
  """Formats seconds as `H:MM:SS` (or `?` when unknown)."""
  if not math.isfinite(seconds) or seconds < 0:
    return "?"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Reports step, rate and ETA, at most once every `every_seconds`.

  Rates are measured over the interval since the previous report, not since
  the start, so the compile time of the first step stops skewing the ETA
  after the first report.
  """

  def __init__(self, total: int | None = None, name: str = "progress", *,
               unit: str = "steps", item_unit: str = "items",
               start_step: int = 0, every_seconds: float = 30.0,
               printer: Callable[[str], None] = default_printer,
               clock: Callable[[], float] = time.monotonic):
    """Initialises the reporter.

    Args:
      total: the step at which the loop ends; None when unknown.
      name: prefix of each line (e.g. "train", "eval").
      unit: what a step counts (e.g. "steps", "videos").
      item_unit: what `items` counts (e.g. "frames", "examples").
      start_step: the step the loop starts from (non-zero when resuming).
      every_seconds: the minimum time between two reports; 0 reports always.
      printer: where lines go.
      clock: a monotonic clock in seconds (injectable for tests).
    """
    self.total = total
    self.name = name
    self.unit = unit
    self.item_unit = item_unit
    self.every_seconds = every_seconds
    self._printer = printer
    self._clock = clock
    self._last_time = clock()
    self._last_step = start_step  # At the last report.
    self._step = start_step  # At the last update.
    self._pending_items = 0
    self.steps_per_second = math.nan
    self.items_per_second = math.nan

  def eta_seconds(self, step: int) -> float:
    """Seconds until `total` at the last measured rate (nan when unknown)."""
    if self.total is None or not self.steps_per_second > 0:
      return math.nan
    return max(self.total - step, 0) / self.steps_per_second

  def update(self, step: int, *, items: int = 0, extra: str = "",
             force: bool = False) -> str | None:
    """Records that the loop reached `step`; reports if enough time passed.

    Args:
      step: the number of steps done so far (absolute, not an increment).
      items: items processed since the previous `update` (e.g. the batch
        size); adds an items/s rate to the line when ever non-zero.
      extra: text appended to the line (e.g. current metrics).
      force: report even if `every_seconds` has not passed.

    Returns:
      The line reported, or None if it was too early to report.
    """
    self._pending_items += items
    self._step = step
    now = self._clock()
    elapsed = now - self._last_time
    if not force and elapsed < self.every_seconds:
      return None
    if elapsed > 0 and step > self._last_step:
      self.steps_per_second = (step - self._last_step) / elapsed
      if self._pending_items:
        self.items_per_second = self._pending_items / elapsed
    self._last_time, self._last_step, self._pending_items = now, step, 0
    line = self.line(step, extra)
    self._printer(line)
    return line

  def finish(self, step: int | None = None, extra: str = "") -> str:
    """Reports the final state unconditionally."""
    return self.update(self._step if step is None else step, extra=extra,
                       force=True)

  def line(self, step: int, extra: str = "") -> str:
    """Formats the progress line for `step` with the last measured rates."""
    if self.total:
      parts = [f"{self.name} {step}/{self.total} "
               f"({100.0 * step / self.total:.1f}%)"]
    else:
      parts = [f"{self.name} {step}"]
    rate = self.steps_per_second
    parts.append(f"{rate:.3g} {self.unit}/s" if math.isfinite(rate)
                 else f"? {self.unit}/s")
    if math.isfinite(self.items_per_second):
      parts.append(f"{self.items_per_second:.4g} {self.item_unit}/s")
    if self.total is not None:
      parts.append(f"ETA {format_duration(self.eta_seconds(step))}")
    if extra:
      parts.append(extra)
    return " | ".join(parts)
