"""Boxes: IoU, the regression code, clipping, jitter, a mask's bounding box.

A box is `(x1, y1, x2, y2)` in pixels, with pixel `i` covering `[i, i + 1)`,
so a mask whose foreground spans columns 3..7 has `x1 = 3, x2 = 8`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Regression weights of Faster R-CNN: none for the RPN, (10, 10, 5, 5) for
# the box head, whose deltas are relative to boxes already close to the
# object and so are small.
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Largest log-scale change decoded (Detectron's clamp): exp() of a wild
# early prediction must not overflow.
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def area(boxes: jax.Array) -> jax.Array:
  """(...,) areas of (..., 4) boxes; 0 for empty or inverted boxes."""
  w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
  h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
  return w * h


def pairwise_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """(N, M) intersection over union of (N, 4) and (M, 4) boxes (0 if empty)."""
  lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
  rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = jnp.maximum(rb - lt, 0.0)
  inter = wh[..., 0] * wh[..., 1]
  union = area(a)[:, None] + area(b)[None, :] - inter
  return jnp.where(union > 0, inter / jnp.maximum(union, 1e-12), 0.0)


def _centre_size(boxes: jax.Array):
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode(boxes: jax.Array, reference: jax.Array,
           weights=RPN_WEIGHTS) -> jax.Array:
  """Deltas (dx, dy, dw, dh) that move `reference` boxes onto `boxes`.

  Args:
    boxes: (..., 4) targets.
    reference: (..., 4) anchors or proposals (positive sizes).
    weights: per-coordinate scale of the deltas.

  Returns:
    (..., 4) deltas: centre offsets in units of the reference size and log
    size ratios, each times its weight.
  """
  x, y, w, h = _centre_size(boxes)
  rx, ry, rw, rh = _centre_size(reference)
  # Degenerate boxes (an empty mask, a padded proposal) give finite deltas,
  # which the losses ignore; NaNs would leak into gradients even so.
  w, h = jnp.maximum(w, 1e-3), jnp.maximum(h, 1e-3)
  rw, rh = jnp.maximum(rw, 1e-3), jnp.maximum(rh, 1e-3)
  wx, wy, ww, wh = weights
  return jnp.stack([wx * (x - rx) / rw, wy * (y - ry) / rh,
                    ww * jnp.log(w / rw), wh * jnp.log(h / rh)], axis=-1)


def decode(deltas: jax.Array, reference: jax.Array,
           weights=RPN_WEIGHTS) -> jax.Array:
  """Inverse of `encode`: the boxes that `deltas` make of `reference`."""
  rx, ry, rw, rh = _centre_size(reference)
  wx, wy, ww, wh = weights
  x = rx + deltas[..., 0] / wx * rw
  y = ry + deltas[..., 1] / wy * rh
  w = rw * jnp.exp(jnp.minimum(deltas[..., 2] / ww, _MAX_LOG_SCALE))
  h = rh * jnp.exp(jnp.minimum(deltas[..., 3] / wh, _MAX_LOG_SCALE))
  return jnp.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h],
                   axis=-1)


def clip(boxes: jax.Array, height: int, width: int) -> jax.Array:
  """Clips (..., 4) boxes to the image."""
  x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
  return jnp.stack([jnp.clip(x1, 0, width), jnp.clip(y1, 0, height),
                    jnp.clip(x2, 0, width), jnp.clip(y2, 0, height)], -1)


def mask_to_box(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The tight box of a (H, W) mask's nonzero pixels, with static shapes.

  Returns:
    (box (4,) float32, present bool scalar); the box is all zeros when the
    mask is empty.
  """
  rows = jnp.any(mask > 0, axis=1)
  cols = jnp.any(mask > 0, axis=0)
  h, w = mask.shape
  # argmax finds the first True; on the reversed array, the last one.
  y1, y2 = jnp.argmax(rows), h - jnp.argmax(rows[::-1])
  x1, x2 = jnp.argmax(cols), w - jnp.argmax(cols[::-1])
  present = jnp.any(rows)
  box = jnp.stack([x1, y1, x2, y2]).astype(jnp.float32)
  return jnp.where(present, box, 0.0), present


def jitter(rng: jax.Array, box: jax.Array, count: int,
           fraction: float) -> jax.Array:
  """`count` copies of a (4,) box, each side moved by up to `fraction` of
  the box's size along that side (uniformly, independently).

  Returns:
    (count, 4) boxes (not clipped; the sides may cross for tiny boxes, which
    then have zero area).
  """
  w, h = box[2] - box[0], box[3] - box[1]
  u = jax.random.uniform(rng, (count, 4), minval=-fraction, maxval=fraction)
  return box + u * jnp.stack([w, h, w, h])
