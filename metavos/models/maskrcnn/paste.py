"""Pasting a box's fixed-size mask back into the full frame.

Each frame pixel's centre is mapped into the `M x M` mask's coordinates and
the mask is sampled bilinearly there, zero outside it (as Detectron2's
`paste_masks_in_image`, `grid_sample` with zero padding). Separable weights
make it two matrix products with static shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _weights(start: jax.Array, stop: jax.Array, size: int,
             mask_size: int) -> jax.Array:
  """(size, mask_size) bilinear weights of frame pixels over mask cells."""
  pos = ((jnp.arange(size) + 0.5 - start) / jnp.maximum(stop - start, 1e-3)
         * mask_size - 0.5)
  return jnp.maximum(0.0, 1.0 - jnp.abs(pos[:, None]
                                        - jnp.arange(mask_size)[None, :]))


def paste_mask(mask: jax.Array, box: jax.Array, height: int,
               width: int) -> jax.Array:
  """Pastes an (M, M) mask (probabilities) covering `box` into (H, W).

  Args:
    mask: (M, M) values for the box, row 0 at the box's top.
    box: (4,) `(x1, y1, x2, y2)` in frame pixels.
    height, width: frame size.

  Returns:
    (H, W) values, 0 away from the box.
  """
  m = mask.shape[0]
  wy = _weights(box[1], box[3], height, m)
  wx = _weights(box[0], box[2], width, m)
  return wy @ mask @ wx.T
