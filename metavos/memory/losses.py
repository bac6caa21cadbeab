"""Bootstrapped cross-entropy over K+1 classes (STCN).

Per pixel, the cross-entropy of the aggregated logits against the class
(0 = background, i = object i); each image's loss is the mean over its
hardest `p` fraction of valid pixels, with `p` annealed from 1 (plain
cross-entropy) to `final_p` (STCN: 0.15) between two steps. The hardest
pixels are taken per image rather than over STCN's whole batch, so the loss
of a data-parallel batch does not depend on how it is split over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bootstrap_fraction(step: jax.Array, start: int, end: int,
                       final_p: float) -> jax.Array:
  """p(step): 1 before `start`, linear to `final_p` at `end`, then constant."""
  t = jnp.clip((step - start) / max(end - start, 1), 0.0, 1.0)
  return 1.0 + (final_p - 1.0) * t


def class_labels(masks: jax.Array) -> jax.Array:
  """(..., K, H, W) one-hot object masks -> (..., H, W) int32 class ids
  (0 = background, i + 1 = object i)."""
  obj = jnp.argmax(masks, axis=-3) + 1
  return jnp.where(jnp.sum(masks, axis=-3) > 0, obj, 0).astype(jnp.int32)


def pixel_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """(..., K+1, H, W) logits, (..., H, W) ids -> (..., H, W) cross-entropy."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-3)
  return -jnp.take_along_axis(logp, labels[..., None, :, :], axis=-3)[
      ..., 0, :, :]


def bootstrapped_ce(logits: jax.Array, masks: jax.Array, valid: jax.Array,
                    p: jax.Array | float = 1.0) -> jax.Array:
  """Mean cross-entropy of the hardest `p` fraction of each image's pixels.

  Args:
    logits: (..., K+1, H, W) aggregated logits, background first.
    masks: (..., K, H, W) one-hot object masks (all zero = background).
    valid: (..., H, W) bool; void and unlabelled pixels are False.
    p: fraction of valid pixels kept (traced is fine), in (0, 1].

  Returns:
    Scalar: per image, the mean CE over its floor(p * n_valid) (at least 1)
    hardest valid pixels; averaged over the images that have a valid pixel
    (0 when none has), so unlabelled frames do not dilute the loss.
  """
  ce = pixel_ce(logits, class_labels(masks))
  pixels = ce.shape[-2] * ce.shape[-1]
  ce = ce.reshape(-1, pixels)
  valid = valid.reshape(-1, pixels)
  n_valid = jnp.sum(valid, axis=-1)
  n = jnp.maximum(jnp.floor(p * n_valid), 1.0)
  # CE >= 0, so invalid pixels (-1) sort after every valid one.
  hardest = -jnp.sort(-jnp.where(valid, ce, -1.0), axis=-1)
  keep = jnp.arange(pixels)[None, :] < n[:, None]
  per_image = jnp.sum(jnp.where(keep, hardest, 0.0), axis=-1) / n
  has = n_valid > 0
  return jnp.sum(jnp.where(has, per_image, 0.0)) / jnp.maximum(
      jnp.sum(has), 1)
