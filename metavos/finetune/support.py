"""The support loss: augmented copies of the annotated frame(s), one loss.

Used both by meta-training (support = one random frame of a task) and by
test-time fine-tuning (support = the annotated frame(s), plus recent
predictions during online adaptation), so both see the same objective.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metavos.finetune import augment as augment_lib
from metavos.models import interface

# fold_in data of the augmented support bank of frozen-stage fine-tuning
# (test time and e-OSVOS meta-training alike).
BANK_STREAM = 0x7FFD
# The model's loss for one object (`VOSModel.make_loss(pixel_loss)`).
ModelLoss = interface.LossFn


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


def make_support_loss(model_loss: ModelLoss, images: jax.Array,
                      masks: jax.Array, valid: jax.Array, *, copies: int,
                      augment: dict[str, Any] | None):
  """Returns the pure `loss_fn(params, rng)` the inner loop minimises.

  `rng` draws the augmentation; the model's own loss gets a key folded from
  it (a detector jitters boxes with it), so the augmentation stream is the
  same whatever model is trained.
  """

  def loss_fn(params, rng):
    img, msk, val = augmented_copies(rng, images, masks, valid, copies,
                                     augment)
    return model_loss(params, img, msk, val, jax.random.fold_in(rng, 1))

  return loss_fn


def support_bank(prefix_fn, params, images: jax.Array, masks: jax.Array,
                 valid: jax.Array, rng: jax.Array, bank: int,
                 augment: dict[str, Any] | None):
  """The support set of fine-tuning with frozen stages, computed once:
  `bank` augmented copies of each support frame (the frames themselves
  without `augment`) through the frozen stages (`prefix_fn` of the model's
  `split`).

  Returns:
    (cache, masks, valid), each with leading dim N * bank (N without
    augment).
  """
  img, msk, val = augmented_copies(rng, images, masks, valid, bank, augment)
  return prefix_fn(params, img), msk, val


def make_bank_loss(suffix_fn, pixel_loss, cache, masks: jax.Array,
                   valid: jax.Array, draw: int):
  """`loss_fn(params, rng)` on a `support_bank`: each call draws `draw` of
  its entries (without replacement) and runs only the layers after the
  frozen stages, so the frozen parameters get zero gradients."""
  masks, valid = jnp.asarray(masks), jnp.asarray(valid)

  def loss_fn(params, rng):
    idx = jax.random.choice(rng, masks.shape[0], (draw,), replace=False)
    logits = suffix_fn(params, jax.tree.map(lambda a: a[idx], cache),
                       masks.shape[-2:])
    return pixel_loss(logits[..., 0], masks[idx], valid[idx])

  return loss_fn


def query_loss(model_loss: ModelLoss, params, images: jax.Array,
               masks: jax.Array, valid: jax.Array,
               rng: jax.Array) -> jax.Array:
  """Loss of adapted `params` on (Q, H, W, 3) query frames."""
  return model_loss(params, images, masks, valid, rng)
