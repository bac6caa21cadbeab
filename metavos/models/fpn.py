"""Feature pyramid: lateral 1x1 convs, a top-down pathway, 3x3 smoothing."""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from metavos.models import resnet


def resize_to(x: jax.Array, height: int, width: int) -> jax.Array:
  """Bilinearly resizes NHWC `x` to `(height, width)`; a no-op if equal.

  Half-pixel centres (torch's `align_corners=False`). Antialiasing is off
  because this only upsamples, where it would change nothing but the cost.
  """
  if x.shape[-3:-1] == (height, width):
    return x
  shape = x.shape[:-3] + (height, width, x.shape[-1])
  return jax.image.resize(x, shape, "bilinear", antialias=False)


class FPN(nnx.Module):
  """Top-down feature pyramid over C2..C5 (Lin et al., 2017), with GroupNorm.

  Every level has `dim` channels and keeps its backbone feature's size; a
  coarser level is resized to the finer lateral's exact size, so inputs whose
  sides are not multiples of 32 work. The 3x3 smoothing conv is followed by
  GroupNorm and ReLU, so each level arrives at a segmentation head already
  normalised (it doubles as Panoptic FPN's per-level conv-GN-ReLU).
  """

  def __init__(self, in_channels: Sequence[int], dim: int,
               norm_groups: int = 32, *, rngs: nnx.Rngs):
    """Builds the pyramid.

    Args:
      in_channels: channels of the backbone features, finest first.
      dim: channels of every pyramid level.
      norm_groups: requested GroupNorm groups (see `resnet.group_count`).
      rngs: initialisation randomness.
    """
    self.lateral = nnx.List([
        resnet.conv(c, dim, 1, 1, rngs, use_bias=True) for c in in_channels])
    self.smooth = nnx.List([
        resnet.conv(dim, dim, 3, 1, rngs) for _ in in_channels])
    self.smooth_norm = nnx.List([
        resnet.group_norm(dim, norm_groups, rngs) for _ in in_channels])

  def __call__(self, features: Sequence[jax.Array]) -> list[jax.Array]:
    """Maps backbone features to pyramid levels, both finest first."""
    merged = []
    top = None
    for feature, lateral in reversed(list(zip(features, self.lateral))):
      x = lateral(feature)
      if top is not None:
        x = x + resize_to(top, x.shape[-3], x.shape[-2])
      merged.append(x)
      top = x
    merged.reverse()
    return [jax.nn.relu(norm(conv(x))) for x, conv, norm
            in zip(merged, self.smooth, self.smooth_norm)]
