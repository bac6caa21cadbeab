"""Anchor boxes of the region proposal network, one set per pyramid level.

At every position of a level of stride `s`, one anchor per (scale, ratio):
an anchor of size `scale * s` and aspect ratio `r = h / w` has
`w = size / sqrt(r)`, `h = size * sqrt(r)` (area `size**2`), centred on the
position's pixel centre `((x + 0.5) s, (y + 0.5) s)`. Anchors depend only on
static shapes, so they are NumPy constants inside a jitted function.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def cell_anchors(size: float, ratios: Sequence[float],
                 scales: Sequence[float]) -> np.ndarray:
  """(A, 4) anchors centred at 0 for one level of stride `size`."""
  out = []
  for scale in scales:
    for ratio in ratios:
      w = scale * size / np.sqrt(ratio)
      h = scale * size * np.sqrt(ratio)
      out.append((-w / 2, -h / 2, w / 2, h / 2))
  return np.asarray(out, np.float32)


def level_anchors(height: int, width: int, stride: int,
                  scales: Sequence[float],
                  ratios: Sequence[float]) -> np.ndarray:
  """(height * width * A, 4) anchors of a level, ordered (y, x, anchor).

  The order matches a head's `(H, W, A)` output flattened in C order.
  """
  cells = cell_anchors(stride, ratios, scales)
  ys = (np.arange(height, dtype=np.float32) + 0.5) * stride
  xs = (np.arange(width, dtype=np.float32) + 0.5) * stride
  cy, cx = np.meshgrid(ys, xs, indexing="ij")
  centres = np.stack([cx, cy, cx, cy], axis=-1)  # (H, W, 4)
  return (centres[:, :, None, :] + cells[None, None]).reshape(-1, 4)


def pyramid_anchors(level_shapes: Sequence[tuple[int, int]],
                    strides: Sequence[int], scales: Sequence[float],
                    ratios: Sequence[float]) -> np.ndarray:
  """All levels' anchors concatenated, finest level first."""
  return np.concatenate([level_anchors(h, w, s, scales, ratios)
                         for (h, w), s in zip(level_shapes, strides)])
