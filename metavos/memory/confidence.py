"""Confidence-masked pseudo-supervision of unlabelled frames (pure).

Two-shot training supervises a frame without a real label by a model's own
prediction, but only where that prediction is confident:

  phase 1: the EMA teacher's prediction where its top probability is at
    least 0.9; the other pixels of an unlabelled frame are ignored.
  phase 2: the pseudo-label of an unlabelled frame is replaced by the
    student's prediction where the student is at least 0.99 confident.

Both are `pseudo_supervise`. A real label is never changed: frames flagged
`labelled` keep their masks and valid pixels (void stays void).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def confident_classes(probs: jax.Array, threshold: float | jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Arg-max class and whether it is confident.

  Args:
    probs: (..., K+1, H, W) class probabilities, background first.
    threshold: the least top probability that counts as confident.

  Returns:
    (classes (..., H, W) int32 in [0, K], confident (..., H, W) bool).
  """
  classes = jnp.argmax(probs, axis=-3).astype(jnp.int32)
  return classes, jnp.max(probs, axis=-3) >= threshold


def pseudo_supervise(probs: jax.Array, masks: jax.Array, valid: jax.Array,
                     labelled: jax.Array, threshold: float | jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  """Targets where unlabelled frames take the confident predictions.

  Args:
    probs: (..., K+1, H, W) predicted probabilities (no gradient is taken
      through them: callers pass `stop_gradient`ed values).
    masks: (..., K, H, W) one-hot targets so far (zeros, or pseudo-labels).
    valid: (..., H, W) bool, pixels scored so far.
    labelled: (...) bool, frames with a real label: left untouched.
    threshold: confidence threshold.

  Returns:
    (masks, valid): at confident pixels of unlabelled frames the one-hot
    prediction (all zero for background), marked valid; elsewhere the
    inputs unchanged.
  """
  k = masks.shape[-3]
  classes, confident = confident_classes(probs, threshold)
  one_hot = (classes[..., None, :, :]
             == jnp.arange(1, k + 1)[:, None, None]).astype(masks.dtype)
  take = confident & ~labelled[..., None, None]
  return (jnp.where(take[..., None, :, :], one_hot, masks),
          valid | take)


def confident_fraction(probs: jax.Array, labelled: jax.Array,
                       threshold: float | jax.Array) -> jax.Array:
  """Share of the unlabelled frames' pixels that are confident (a metric:
  how much of them `pseudo_supervise` takes over)."""
  _, confident = confident_classes(probs, threshold)
  unl = jnp.broadcast_to(~labelled[..., None, None], confident.shape)
  return jnp.sum(confident & unl) / jnp.maximum(jnp.sum(unl), 1)
