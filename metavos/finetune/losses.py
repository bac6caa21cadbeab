"""Binary segmentation losses for fine-tuning on an annotated frame.

Every loss has the signature `loss(logits, labels, valid=None) -> scalar` and
is pure JAX with static shapes, so it can sit inside a jit-compiled, vmapped
`jax.lax.scan` inner loop and be differentiated through (also twice, for
second-order meta-gradients).

Shapes. `logits` is `(..., H, W)` or `(..., H, W, 1)`; `labels` and `valid`
have the same spatial shape, with or without the trailing channel axis. A
trailing axis of size 1 is read as a channel axis whenever the array has at
least 3 dims, so a batch of one-pixel-wide images must carry an explicit
channel axis. The last two (non-channel) axes are the image; all leading axes
are a batch of images.

Labels are in {0, 1} (any dtype). Void pixels, and pixels that augmentation
moved in from outside the image, are excluded through `valid` (bool); convert
a void label such as 255 to `valid=False` before calling.

Reduction. Every loss is computed per image and then averaged over all
leading batch axes, so each augmented copy of a frame weighs the same
whatever its number of valid pixels. An image without valid pixels has loss 0
and still counts in the average. Losses are computed in at least float32,
and whatever the logits hold at invalid pixels (even NaN) is ignored.
"""

from __future__ import annotations

from typing import Callable, Optional

import functools

import jax
import jax.numpy as jnp

Array = jax.Array
LossFn = Callable[..., Array]


def _drop_channel(x: Array) -> Array:
  """Drops a trailing channel axis of size 1 from an array of >= 3 dims."""
  if x.ndim >= 3 and x.shape[-1] == 1:
    return x[..., 0]
  return x


def _as_images(
    logits: Array, labels: Array, valid: Optional[Array]
) -> tuple[Array, Array, Array]:
  """Returns logits, float labels and bool valid as (images, pixels) arrays.

  Args:
    logits: (..., H, W) or (..., H, W, 1) floats.
    labels: {0, 1} labels of the same spatial shape.
    valid: optional bool mask of the same spatial shape; None means all valid.

  Returns:
    (logits, labels, valid), each of shape (num_images, H * W); logits are
    in at least float32 and labels in the same dtype.
  """
  logits = _drop_channel(jnp.asarray(logits))
  # At least float32: low-precision pixel counts and sums would be wrong
  # (bfloat16 cannot count past 256).
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  labels = _drop_channel(jnp.asarray(labels))
  if valid is None:
    valid = jnp.ones(logits.shape, dtype=bool)
  valid = _drop_channel(jnp.asarray(valid))
  if logits.ndim < 2 or labels.shape != logits.shape or valid.shape != (
      logits.shape):
    raise ValueError(
        'Expected logits (..., H, W[, 1]) with labels and valid of the same'
        f' shape; got logits {logits.shape}, labels {labels.shape}, valid'
        f' {valid.shape}. Give every array the same batch and spatial axes.')
  num_pixels = logits.shape[-2] * logits.shape[-1]
  valid = valid.astype(bool)
  # Void logits are replaced before any arithmetic, so whatever they hold
  # (even NaN) changes neither the loss nor the gradient (exactly 0 there).
  logits = jnp.where(valid, logits, jnp.zeros((), logits.dtype))
  return (logits.reshape(-1, num_pixels),
          labels.astype(logits.dtype).reshape(-1, num_pixels),
          valid.reshape(-1, num_pixels))


def _lovasz_hinge_flat(logits: Array, labels: Array, valid: Array) -> Array:
  """Lovász hinge of one set of pixels, all (P,) arrays."""
  errors = 1.0 - logits * (2.0 * labels - 1.0)
  # Invalid pixels are left out of both counts below, so the Jaccard loss does
  # not move across them and their weight is exactly 0 wherever they sort;
  # error -inf also sorts them after every valid pixel, with relu(-inf) = 0.
  # The loss thus equals that of the valid pixels alone, with static shapes.
  errors = jnp.where(valid, errors, -jnp.inf)
  pos = jnp.where(valid, labels, 0.0)
  neg = jnp.where(valid, 1.0 - labels, 0.0)
  # One sort on -errors (descending errors) carries the labels along. The
  # permutation is piecewise constant in the logits, so gradients flow through
  # the sorted values only, as in Berman et al.; ties do not change the value.
  neg_sorted_errors, pos_sorted, neg_sorted = jax.lax.sort(
      (-errors, pos, neg), num_keys=1)
  # Jaccard loss of the set M_k of the k largest errors: |M_k| / |Y+ u M_k|,
  # from counts that are exact in float32 up to 2**24 pixels.
  num_pos = jnp.sum(pos_sorted)
  intersection = num_pos - jnp.cumsum(pos_sorted)
  union = num_pos + jnp.cumsum(neg_sorted)
  # union == 0 only before the first valid pixel of an image without
  # positives, where M_k is empty and the Jaccard loss is 0 by definition.
  jaccard = jnp.where(
      union > 0, 1.0 - intersection / jnp.maximum(union, 1.0), 0.0)
  # Gradient of the Lovász extension: the increments of the Jaccard loss.
  weights = jnp.diff(jaccard, prepend=jnp.zeros((1,), jaccard.dtype))
  return jnp.dot(jax.nn.relu(-neg_sorted_errors), weights)


def lovasz_hinge(
    logits: Array,
    labels: Array,
    valid: Optional[Array] = None,
    per_image: bool = True,
) -> Array:
  """Binary Lovász hinge loss (Berman, Rannen Triki, Blaschko, CVPR 2018).

  The convex Lovász extension of the Jaccard (IoU) loss applied to the hinge
  errors `1 - logits * (2 * labels - 1)`. The loss is piecewise linear in the
  logits: its gradient is exact wherever the errors have no ties, and its
  Hessian is zero almost everywhere (second-order meta-gradients through it
  see only the curvature of the network).

  Args:
    logits: (..., H, W) or (..., H, W, 1) real-valued scores; 0 is the
      decision boundary.
    labels: {0, 1} labels of the same spatial shape.
    valid: optional bool mask of the same spatial shape; False pixels are
      ignored exactly as if they were absent.
    per_image: if True, the loss of each image averaged over the batch axes;
      if False, one loss over all pixels of the batch.

  Returns:
    Scalar loss.
  """
  logits, labels, valid = _as_images(logits, labels, valid)
  if not per_image:
    logits, labels, valid = (x.reshape(1, -1) for x in (logits, labels, valid))
  return jnp.mean(jax.vmap(_lovasz_hinge_flat)(logits, labels, valid))


def _pixel_terms(logits: Array, labels: Array) -> tuple[Array, Array]:
  """Returns -log p(y=1) weighted by y and -log p(y=0) weighted by 1 - y.

  softplus(-x) = -log sigmoid(x) and softplus(x) = -log(1 - sigmoid(x)) are
  stable for any logit and smooth, so they can be differentiated twice.
  """
  return (labels * jax.nn.softplus(-logits),
          (1.0 - labels) * jax.nn.softplus(logits))


def binary_cross_entropy(
    logits: Array, labels: Array, valid: Optional[Array] = None
) -> Array:
  """Sigmoid binary cross-entropy, mean over the valid pixels of each image.

  Args:
    logits: (..., H, W) or (..., H, W, 1) real-valued scores.
    labels: {0, 1} labels of the same spatial shape.
    valid: optional bool mask of the same spatial shape.

  Returns:
    Scalar: per-image mean over valid pixels, averaged over the batch axes.
  """
  logits, labels, valid = _as_images(logits, labels, valid)
  pos_terms, neg_terms = _pixel_terms(logits, labels)
  total = jnp.sum(jnp.where(valid, pos_terms + neg_terms, 0.0), axis=-1)
  count = jnp.sum(valid, axis=-1).astype(logits.dtype)
  return jnp.mean(total / jnp.maximum(count, 1.0))


def class_balanced_cross_entropy(
    logits: Array,
    labels: Array,
    valid: Optional[Array] = None,
    normalize: bool = False,
) -> Array:
  """Class-balanced cross-entropy of OSVOS (Caelles et al., CVPR 2017).

  Per image, with Y+ / Y- the valid positive / negative pixels and
  |Y| = |Y+| + |Y-|, the paper's loss (taken from HED) is

    L = |Y-|/|Y| * sum_{j in Y+} -log p_j
        + |Y+|/|Y| * sum_{j in Y-} -log(1 - p_j),

  a SUM over pixels, so its scale grows with the image size; this is the
  default, and what `get_loss("balanced_bce")` returns. With `normalize=True`
  L is divided by |Y| (the number of valid pixels), which makes the scale
  independent of the resolution.

  Args:
    logits: (..., H, W) or (..., H, W, 1) real-valued scores.
    labels: {0, 1} labels of the same spatial shape.
    valid: optional bool mask of the same spatial shape.
    normalize: divide each image's loss by its number of valid pixels.

  Returns:
    Scalar: per-image loss averaged over the batch axes.
  """
  logits, labels, valid = _as_images(logits, labels, valid)
  pos_terms, neg_terms = _pixel_terms(logits, labels)
  weight = valid.astype(logits.dtype)
  num_pos = jnp.sum(weight * labels, axis=-1)
  num_neg = jnp.sum(weight * (1.0 - labels), axis=-1)
  # max(., 1) only guards images without valid pixels, whose loss is 0.
  num_total = jnp.maximum(num_pos + num_neg, 1.0)
  loss = (num_neg / num_total * jnp.sum(jnp.where(valid, pos_terms, 0.0), -1)
          + num_pos / num_total * jnp.sum(jnp.where(valid, neg_terms, 0.0), -1))
  if normalize:
    loss = loss / num_total
  return jnp.mean(loss)


def unbalance_probs(probs, fg_share):
  """Probabilities of a network trained with `class_balanced_cross_entropy`,
  mapped back to the data's class prior.

  That loss weighs foreground pixels by 1 - pi and background pixels by pi
  (pi: the foreground share of the image), so its minimiser q has odds
  q / (1 - q) = p / (1 - p) * (1 - pi) / pi, with p the plain probability:
  thresholding q at 0.5 keeps every pixel with p > pi, which over-segments
  small objects. This returns p = q pi / (q pi + (1 - q)(1 - pi)).

  Args:
    probs: (K, ...) balanced-loss probabilities of K objects (numpy or jax).
    fg_share: (K,) each object's foreground share pi in (0, 1).
  """
  pi = fg_share.reshape(fg_share.shape + (1,) * (probs.ndim - 1))
  num = probs * pi
  return num / (num + (1.0 - probs) * (1.0 - pi))


BALANCED_LOSSES = ("balanced_bce", "balanced_bce_mean")


_LOSSES: dict[str, LossFn] = {
    'lovasz_hinge': lovasz_hinge,
    'bce': binary_cross_entropy,
    'balanced_bce': class_balanced_cross_entropy,
    # Per-pixel mean: the scale plain SGD rates are tuned for (the summed
    # paper loss grows with the image size and needs rates like 1e-8).
    'balanced_bce_mean': functools.partial(class_balanced_cross_entropy,
                                           normalize=True),
}


def get_loss(name: str = 'lovasz_hinge') -> LossFn:
  """Returns the loss function registered under `name`.

  Args:
    name: one of "lovasz_hinge" (default), "bce", "balanced_bce",
      "balanced_bce_mean".

  Returns:
    A function `loss(logits, labels, valid=None) -> scalar`.

  Raises:
    ValueError: for an unknown name; the message lists the options.
  """
  if name not in _LOSSES:
    raise ValueError(
        f'Unknown loss {name!r}; choose one of {sorted(_LOSSES)} (config'
        ' field naming the fine-tuning loss).')
  return _LOSSES[name]
