"""The support loss: augmented copies of the annotated frame(s), one loss.

Used both by meta-training (support = one random frame of a task) and by
test-time fine-tuning (support = the annotated frame(s), plus recent
predictions during online adaptation), so both see the same objective.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from metavos.finetune import augment as augment_lib

ApplyFn = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[..., jax.Array]


def augmented_copies(rng: jax.Array, images: jax.Array, masks: jax.Array,
                     valid: jax.Array, copies: int,
                     augment: dict[str, Any] | None):
  """Draws `copies` freshly augmented versions of each support frame.

  Args:
    rng: key for this inner step.
    images: (N, H, W, 3) float support frames.
    masks: (N, H, W) {0,1} masks.
    valid: (N, H, W) bool, False on void pixels.
    copies: augmented copies per frame.
    augment: kwargs for `metavos.finetune.augment.augment`, or None to use
      the frames as they are (copies is then forced to 1).

  Returns:
    (images, masks, valid) with leading dim N * copies (N without augment).
  """
  if not augment:
    return images, masks, valid
  n = images.shape[0]
  keys = jax.random.split(rng, n * copies).reshape(n, copies)

  def one_frame(frame_keys, image, mask, val):
    return jax.vmap(lambda k: augment_lib.augment(k, image, mask, val,
                                                  **augment))(frame_keys)

  img, msk, val = jax.vmap(one_frame)(keys, images, masks, valid)
  flat = lambda x: x.reshape((n * copies,) + x.shape[2:])
  return flat(img), flat(msk), flat(val)


def make_support_loss(apply_fn: ApplyFn, loss: LossFn, images: jax.Array,
                      masks: jax.Array, valid: jax.Array, *, copies: int,
                      augment: dict[str, Any] | None):
  """Returns the pure `loss_fn(params, rng)` the inner loop minimises."""

  def loss_fn(params, rng):
    img, msk, val = augmented_copies(rng, images, masks, valid, copies,
                                     augment)
    logits = apply_fn(params, img)
    return loss(logits[..., 0], msk, val)

  return loss_fn


def query_loss(apply_fn: ApplyFn, loss: LossFn, params, images: jax.Array,
               masks: jax.Array, valid: jax.Array) -> jax.Array:
  """Loss of adapted `params` on (Q, H, W, 3) query frames."""
  logits = apply_fn(params, images)
  return loss(logits[..., 0], masks, valid)


def sigmoid_probs(apply_fn: ApplyFn, params, images: jax.Array) -> jax.Array:
  """(B, H, W) foreground probabilities."""
  return jax.nn.sigmoid(apply_fn(params, images)[..., 0].astype(jnp.float32))
