"""RoIAlign (He et al., 2017) as two small matrix products per box.

Bilinear interpolation is separable: the value sampled at (y, x) is
`sum_h sum_w a(y)[h] F[h, w] b(x)[w]` with `a`, `b` hat-function weights.
Averaging `s x s` samples per bin is then averaging the weight vectors, so a
box's `S x S` output is `Ay @ F @ Bx^T` with `Ay` (S, H) and `Bx` (S, W):
matmuls instead of gathers, cheap to differentiate and static in shape.
The sampling follows Detectron2's `ROIAlign(aligned=True)`: the box is
shifted by half a pixel, a sample more than one pixel outside the feature
map contributes 0, and one inside is clamped to the border.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def _axis_weights(start: jax.Array, length: jax.Array, bins: int,
                  sampling_ratio: int, size: int) -> jax.Array:
  """(R, bins, size): each bin's mean bilinear weight over one axis."""
  offsets = (jnp.arange(bins)[:, None]
             + (jnp.arange(sampling_ratio)[None, :] + 0.5) / sampling_ratio)
  pos = start[:, None, None] + (length / bins)[:, None, None] * offsets
  inside = (pos >= -1.0) & (pos <= size)
  pos = jnp.clip(pos, 0.0, size - 1)
  hat = jnp.maximum(0.0, 1.0 - jnp.abs(pos[..., None] - jnp.arange(size)))
  return jnp.mean(jnp.where(inside[..., None], hat, 0.0), axis=2)


def roi_align(features: jax.Array, boxes: jax.Array, output_size: int,
              spatial_scale: float, sampling_ratio: int) -> jax.Array:
  """Pools `output_size x output_size` features for each box.

  Args:
    features: (H, W, C) one image's feature map.
    boxes: (R, 4) boxes in image pixels.
    output_size: bins per side, S.
    spatial_scale: feature pixels per image pixel (1 / stride).
    sampling_ratio: bilinear samples per bin along each axis (> 0).

  Returns:
    (R, S, S, C) pooled features.
  """
  if sampling_ratio < 1:
    raise ValueError(f"roi_align: sampling_ratio must be >= 1 (static "
                     f"shapes), got {sampling_ratio}.")
  h, w, _ = features.shape
  b = boxes * spatial_scale - 0.5
  wy = _axis_weights(b[:, 1], b[:, 3] - b[:, 1], output_size, sampling_ratio,
                     h)
  wx = _axis_weights(b[:, 0], b[:, 2] - b[:, 0], output_size, sampling_ratio,
                     w)
  wy, wx = wy.astype(features.dtype), wx.astype(features.dtype)
  return jnp.einsum("rih,hwc,rjw->rijc", wy, features, wx)


def level_of(boxes: jax.Array, num_levels: int, canonical_size: float = 224.0,
             canonical_level: int = 4, min_level: int = 2) -> jax.Array:
  """FPN's level rule `floor(4 + log2(sqrt(area) / 224))`, as an index
  into the pyramid (0 = finest level `min_level`)."""
  size = jnp.sqrt(jnp.maximum(
      (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6))
  level = jnp.floor(canonical_level + jnp.log2(size / canonical_size))
  return jnp.clip(level - min_level, 0, num_levels - 1).astype(jnp.int32)


def multilevel_roi_align(levels: Sequence[jax.Array], strides: Sequence[int],
                         boxes: jax.Array, output_size: int,
                         sampling_ratio: int) -> jax.Array:
  """RoIAlign from each box's own pyramid level (`level_of`).

  Every box is pooled from every level and the right one is selected: with
  a handful of RoIs per image this costs less than data-dependent gathers
  and keeps shapes static.

  Args:
    levels: [(H_l, W_l, C)] one image's pyramid, finest first.
    strides: each level's stride in image pixels.
    boxes: (R, 4).
    output_size, sampling_ratio: as in `roi_align`.

  Returns:
    (R, S, S, C).
  """
  index = level_of(boxes, len(levels))
  out = 0.0
  for i, (feature, stride) in enumerate(zip(levels, strides)):
    pooled = roi_align(feature, boxes, output_size, 1.0 / stride,
                       sampling_ratio)
    out = out + jnp.where((index == i)[:, None, None, None], pooled, 0.0)
  return out
