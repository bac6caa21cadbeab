"""A small line plot drawn with Pillow: axes, ticks, grid and a legend.

Enough for "J per frame, one line per object" without matplotlib. NaN values
leave gaps (DAVIS does not score the first and last frames); a value between
two gaps is drawn as a dot.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
GRID = (225, 225, 225)
LINE_WIDTH = 2
_PAD = 6  # Pixels between the text and the axes or the image edge.
_SWATCH = 14  # Length of a legend's colour line.


@dataclasses.dataclass(frozen=True)
class Series:
  """One line: `values[i]` is drawn at x = i; NaN = no value there."""
  label: str
  values: np.ndarray
  colour: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Axes:
  """The plot area in pixels and the data range it shows."""
  left: int
  top: int
  right: int
  bottom: int
  x_range: tuple[float, float]
  y_range: tuple[float, float]

  def px(self, x: float, y: float) -> tuple[float, float]:
    """The pixel (column, row) where data point (x, y) is drawn."""
    (x0, x1), (y0, y1) = self.x_range, self.y_range
    col = self.left + (x - x0) / (x1 - x0) * (self.right - self.left)
    row = self.bottom - (y - y0) / (y1 - y0) * (self.bottom - self.top)
    return col, row


def nice_ticks(low: float, high: float, max_ticks: int = 6) -> list[float]:
  """Round tick values (1, 2, 2.5 or 5 times a power of ten) in [low, high]."""
  if high <= low:
    return [low]
  power = 10.0 ** (math.floor(math.log10(high - low)) - 2)
  while True:  # The smallest round step that gives at most max_ticks ticks.
    for m in (1, 2, 2.5, 5):
      step = m * power
      first = math.ceil(low / step - 1e-9)
      last = math.floor(high / step + 1e-9)
      if last - first + 1 <= max(max_ticks, 1):
        return [round(i * step, 10) for i in range(first, last + 1)]
    power *= 10


def _font() -> ImageFont.ImageFont:
  return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
  left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
  return right - left, bottom - top


def plot_axes(size: tuple[int, int], num_points: int,
              labels: Sequence[str] = (),
              y_range: tuple[float, float] = (0.0, 1.0)) -> Axes:
  """Where `line_plot` puts its plot area (also for tests to read it back).

  Args:
    size: (width, height) of the whole image.
    num_points: values per series; x runs over 0..num_points-1.
    labels: the legend labels, which take a column on the right.
    y_range: the y values shown.
  """
  draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), _font()
  tick_w = max(_text_size(draw, f"{t:g}", font)[0]
               for t in nice_ticks(*y_range))
  text_h = _text_size(draw, "0123456789J", font)[1]
  legend_w = max((_text_size(draw, l, font)[0] for l in labels), default=0)
  legend_w = legend_w + _SWATCH + 3 * _PAD if labels else _PAD
  width, height = size
  return Axes(left=text_h + tick_w + 3 * _PAD, top=text_h + 2 * _PAD,
              right=width - legend_w, bottom=height - 2 * text_h - 3 * _PAD,
              x_range=(0.0, float(max(num_points - 1, 1))), y_range=y_range)


def _draw_frame(draw, axes: Axes, font, x_label: str, y_label: str,
                image: Image.Image) -> None:
  """Grid, axes, ticks with labels, and the axis labels."""
  for y in nice_ticks(*axes.y_range):
    _, row = axes.px(axes.x_range[0], y)
    draw.line([(axes.left, row), (axes.right, row)], fill=GRID)
    draw.line([(axes.left - 4, row), (axes.left, row)], fill=INK)
    w, h = _text_size(draw, f"{y:g}", font)
    draw.text((axes.left - 6 - w, row - h / 2 - 1), f"{y:g}", fill=INK,
              font=font)
  x_ticks = [t for t in nice_ticks(*axes.x_range, max_ticks=8)
             if t == int(t)]  # Frames are whole numbers.
  for x in x_ticks:
    col, _ = axes.px(x, axes.y_range[0])
    draw.line([(col, axes.bottom), (col, axes.bottom + 4)], fill=INK)
    w, _ = _text_size(draw, f"{x:g}", font)
    draw.text((col - w / 2, axes.bottom + _PAD), f"{x:g}", fill=INK, font=font)
  draw.rectangle([axes.left, axes.top, axes.right, axes.bottom], outline=INK)
  w, h = _text_size(draw, x_label, font)
  draw.text(((axes.left + axes.right - w) / 2, image.height - h - _PAD),
            x_label, fill=INK, font=font)
  # A rotated y label: drawn on its own strip, turned, pasted.
  w, h = _text_size(draw, y_label, font)
  strip = Image.new("RGB", (w + 2, h + 4), BACKGROUND)
  ImageDraw.Draw(strip).text((1, 0), y_label, fill=INK, font=font)
  strip = strip.rotate(90, expand=True)
  image.paste(strip, (_PAD // 2, int((axes.top + axes.bottom - strip.height)
                                     / 2)))


def _draw_series(draw, axes: Axes, series: Series) -> None:
  values = np.asarray(series.values, np.float64)
  finite = np.isfinite(values)
  t = 0
  while t < values.size:  # One polyline per run of finite values.
    if not finite[t]:
      t += 1
      continue
    end = t
    while end + 1 < values.size and finite[end + 1]:
      end += 1
    points = [axes.px(i, values[i]) for i in range(t, end + 1)]
    if len(points) == 1:
      (c, r), d = points[0], LINE_WIDTH
      draw.ellipse([c - d, r - d, c + d, r + d], fill=series.colour)
    else:
      draw.line(points, fill=series.colour, width=LINE_WIDTH, joint="curve")
    t = end + 1


def _draw_legend(draw, axes: Axes, font, series: Sequence[Series]) -> None:
  x = axes.right + 2 * _PAD
  y = axes.top
  for s in series:
    _, h = _text_size(draw, s.label, font)
    mid = y + h / 2 + 1
    draw.line([(x, mid), (x + _SWATCH, mid)], fill=s.colour, width=3)
    draw.text((x + _SWATCH + _PAD, y), s.label, fill=INK, font=font)
    y += h + _PAD


def line_plot(series: Sequence[Series], *, size: tuple[int, int] = (480, 220),
              title: str = "", x_label: str = "frame", y_label: str = "J",
              y_range: tuple[float, float] = (0.0, 1.0)) -> Image.Image:
  """Draws `series` as lines over x = 0, 1, ... with a legend on the right.

  Args:
    series: the lines; all of the same length.
    size: (width, height) of the image in pixels.
    title: text above the plot area.
    x_label: label under the x axis.
    y_label: label beside the y axis.
    y_range: y values shown; values outside are clipped to the frame.

  Returns:
    An RGB image.
  """
  lengths = {np.asarray(s.values).size for s in series}
  if len(lengths) > 1:
    raise ValueError(f"series differ in length: {sorted(lengths)}")
  num_points = lengths.pop() if lengths else 1
  axes = plot_axes(size, num_points, [s.label for s in series], y_range)
  if axes.right - axes.left < 20 or axes.bottom - axes.top < 20:
    raise ValueError(f"plot size {size} leaves no room for the axes; use a "
                     "larger size or shorter legend labels")
  image = Image.new("RGB", size, BACKGROUND)
  draw, font = ImageDraw.Draw(image), _font()
  _draw_frame(draw, axes, font, x_label, y_label, image)
  if title:
    draw.text((axes.left, _PAD // 2), title, fill=INK, font=font)
  clip = lambda v: np.clip(v, *y_range)  # NaN stays NaN.
  for s in series:
    _draw_series(draw, axes, dataclasses.replace(s, values=clip(s.values)))
  _draw_legend(draw, axes, font, series)
  return image
