"""One HTML page per evaluation: an overlay GIF and a J plot per video, and
the metrics table of metrics.json.

Layout under the workdir (all links in the page are relative, so the folder
can be copied or served as it is):

  report.html                 the page
  pictures/<sequence>.gif     predicted masks over the frames
  pictures/<sequence>_J.png   J per frame, one line per object

Every number in the table carries its exact value in `data-value` (what
metrics.json holds) and shows it rounded to 3 decimals.
"""

from __future__ import annotations

import dataclasses
import html
import os
import time
import urllib.parse
from typing import Mapping

import ml_collections
import numpy as np

from metavos.data import io
from metavos.data.types import Video
from metavos.metrics import davis as davis_metrics
from metavos.runtime import files
from metavos.visualize import overlay, plot

REPORT = "report.html"
PICTURES = "pictures"


@dataclasses.dataclass(frozen=True)
class VideoPictures:
  """What the report shows for one video; paths relative to the workdir."""
  name: str
  gif: str
  plot: str | None  # None when the video was not scored.
  num_frames: int
  gif_frames: int


def _safe_name(name: str) -> str:
  """A file name for a sequence name (which may hold '/' in YouTube-VOS)."""
  return name.replace(os.sep, "_").replace("/", "_")


def j_plot(result: davis_metrics.VideoResult, num_frames: int,
           size: tuple[int, int], title: str = ""):
  """J per frame, one line per object in its DAVIS palette colour."""
  palette = io.davis_palette()
  series = []
  for obj_id, values in sorted(davis_metrics.per_frame_series(
      result, num_frames, "J").items()):
    mean = np.nanmean(values) if np.isfinite(values).any() else float("nan")
    series.append(plot.Series(f"object {obj_id} (J {mean:.3f})", values,
                              tuple(int(c) for c in palette[obj_id])))
  return plot.line_plot(series, size=tuple(size), title=title)


class ReportWriter:
  """Writes each video's pictures as it is evaluated, then the page."""

  def __init__(self, workdir: str, cfg: ml_collections.ConfigDict):
    """Args: workdir: the evaluation's workdir; cfg: `config.eval`."""
    self.workdir = workdir
    self.cfg = cfg
    self.videos: list[VideoPictures] = []
    self.seconds = 0.0

  def add_video(self, video: Video, pred: np.ndarray,
                result: davis_metrics.VideoResult | None) -> float:
    """Writes `video`'s overlay GIF (and J plot when scored).

    Returns:
      Seconds spent, for timing.json (kept apart from segmentation time).
    """
    t0 = time.perf_counter()
    stem = f"{PICTURES}/{_safe_name(video.name)}"
    kept = overlay.write_overlay_gif(
        os.path.join(self.workdir, f"{stem}.gif"), video.frames, pred,
        max_frames=self.cfg.max_gif_frames, max_side=self.cfg.thumbnail_size,
        fps=self.cfg.gif_fps)
    plot_path = None
    if result is not None:
      plot_path = f"{stem}_J.png"
      image = j_plot(result, video.num_frames, self.cfg.plot_size,
                     title=f"{video.name}: J per frame")
      with files.atomic_open(os.path.join(self.workdir, plot_path)) as f:
        image.save(f, format="PNG")
    self.videos.append(VideoPictures(video.name, f"{stem}.gif", plot_path,
                                     video.num_frames, len(kept)))
    seconds = time.perf_counter() - t0
    self.seconds += seconds
    return seconds

  def write(self, metrics: Mapping, timing: Mapping, title: str) -> str:
    """Writes report.html atomically; returns its path."""
    t0 = time.perf_counter()
    path = os.path.join(self.workdir, REPORT)
    files.atomic_write_text(path, render_html(title, self.videos, metrics,
                                              timing))
    self.seconds += time.perf_counter() - t0
    return path


def _number(key: str, value) -> str:
  value = float(value)
  return (f'<td data-metric="{html.escape(key)}" data-value="{value!r}">'
          f"{value:.3f}</td>")


def metrics_table(metrics: Mapping) -> str:
  """The global row and one row per object, columns as in metrics.json."""
  if not metrics:
    return "<p>No fully annotated video: nothing was scored.</p>"
  keys = davis_metrics.GLOBAL_KEYS
  head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
  rows = [f"<tr><th>sequence</th><th>object</th>{head}</tr>",
          '<tr data-key="global"><td>all</td><td></td>'
          + "".join(_number(k, metrics["global"][k]) for k in keys) + "</tr>"]
  for key, scores in metrics["per_object"].items():
    sequence, _, obj = key.rpartition("_")
    jf = (scores["J-Mean"] + scores["F-Mean"]) / 2
    cells = [f'<td data-metric="J&amp;F-Mean">{jf:.3f}</td>']
    cells += [_number(k, scores[k]) for k in keys[1:]]
    rows.append(f'<tr data-key="{html.escape(key)}"><td>'
                f"{html.escape(sequence)}</td><td>{html.escape(obj)}</td>"
                + "".join(cells) + "</tr>")
  return "<table>\n" + "\n".join(rows) + "\n</table>"


def _video_block(v: VideoPictures, timing: Mapping) -> str:
  src = lambda p: html.escape(urllib.parse.quote(p))
  stats = timing.get("videos", {}).get(v.name, {})
  fps = f", {stats['fps']:.2f} fps" if "fps" in stats else ""
  parts = [f'<figure><img src="{src(v.gif)}" alt="{html.escape(v.name)} '
           'overlay">']
  if v.plot:
    parts.append(f'<img src="{src(v.plot)}" alt="{html.escape(v.name)} J per '
                 'frame">')
  parts.append(f"<figcaption>{html.escape(v.name)}: {v.num_frames} frames "
               f"({v.gif_frames} in the GIF){fps}</figcaption></figure>")
  return "".join(parts)


_STYLE = """body{font-family:sans-serif;margin:1.5em}
table{border-collapse:collapse;font-size:90%}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
img{margin-right:4px;vertical-align:top}"""


def render_html(title: str, videos: list[VideoPictures], metrics: Mapping,
                timing: Mapping) -> str:
  """The report page (see the module docstring)."""
  g = metrics.get("global") if metrics else None
  summary = (f"J&amp;F {g['J&F-Mean']:.3f}, J {g['J-Mean']:.3f}, F "
             f"{g['F-Mean']:.3f}; " if g else "")
  median = timing.get("median_fps")
  summary += f"median {median:.2f} fps per video" if median else ""
  links = ['<a href="metrics.json">metrics.json</a>'] if metrics else []
  links += ['<a href="timing.json">timing.json</a>',
            '<a href="results/">results/</a> (DAVIS palette PNGs)']
  body = [f"<h1>{html.escape(title)}</h1>", f"<p>{summary}</p>",
          f"<p>Files: {', '.join(links)}.</p>",
          "<h2>Metrics</h2>", metrics_table(metrics), "<h2>Videos</h2>",
          *(_video_block(v, timing) for v in videos)]
  return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
          f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
          "</head><body>\n" + "\n".join(body) + "\n</body></html>\n")
