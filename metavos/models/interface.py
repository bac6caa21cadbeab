"""The one model interface that fine-tuning, meta-learning and video code use.

A dense segmenter (FCN, OSVOS head) and a detector (Mask R-CNN) differ in how
they turn an object's binary mask into a loss and in whether segmenting a
video needs memory from frame to frame. Both sit behind `VOSModel`, so the
inner loop, e-OSVOS meta-training, online adaptation and OSVOS never ask
which model they drive:

  loss_fn = vos.make_loss(pixel_loss)
  loss = loss_fn(params, images, masks, valid, rng)        # scalar
  state = vos.init_state(mask)                              # one object
  probs, state = vos.predict(params, state, frames, rng)    # frames in order

All three are pure and static-shaped: they are jitted, differentiated,
vmapped over objects and tasks, and scanned over inner steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

Params = Any
State = Any  # a pytree of arrays; () for models without memory
PRNGKey = jax.Array
# pixel_loss(logits (..., H, W), labels, valid) -> scalar (finetune.losses).
PixelLoss = Callable[..., jax.Array]
# loss_fn(params, images (N, H, W, 3), masks (N, H, W) {0,1},
#         valid (N, H, W) bool, rng) -> scalar: one object's loss.
LossFn = Callable[[Params, jax.Array, jax.Array, jax.Array, PRNGKey],
                  jax.Array]


@dataclasses.dataclass(frozen=True)
class VOSModel:
  """A video object segmentation model, for one object at a time.

  Attributes:
    make_loss: `make_loss(pixel_loss) -> loss_fn`; the model's training loss
      for one object's binary masks, with `pixel_loss` the configured
      segmentation loss (finetune.loss / meta.loss).
    init_state: `init_state(mask (H, W)) -> state`, the per-object memory
      before the first segmented frame, from the object's annotated mask.
    predict: `predict(params, state, frames (B, H, W, 3), rng) ->
      (probs (B, H, W) float32, state)`: foreground probabilities of
      consecutive frames, carrying `state` from each frame to the next.
    split: for dense models, `split(num_frozen) -> (prefix_fn, suffix_fn)`
      (`segmenter.make_split_apply_fns`): the network with its first
      `num_frozen` backbone stages run apart, so fine-tuning that keeps them
      fixed runs them once per support image; None when the model cannot be
      split (the detector).
    frozen_mask: with `split`, `frozen_mask(params, num_frozen)` -> a tree
      of bools like `params`, True on the parameters of those stages
      (`segmenter.frozen_mask`).
  """
  make_loss: Callable[[PixelLoss], LossFn]
  init_state: Callable[[jax.Array], State]
  predict: Callable[[Params, State, jax.Array, PRNGKey],
                    tuple[jax.Array, State]]
  split: Callable[[int], tuple[Callable, Callable]] | None = None
  frozen_mask: Callable[[Params, int], Any] | None = None

  @property
  def stateful(self) -> bool:
    """Whether predictions depend on earlier frames (a state to reset)."""
    return bool(jax.tree.leaves(
        jax.eval_shape(self.init_state, jnp.zeros((8, 8)))))


def dense_model(apply_fn: Callable[[Params, jax.Array], jax.Array],
                split: Callable[[int], tuple[Callable, Callable]] | None = None,
                frozen_mask: Callable[[Params, int], Any] | None = None
                ) -> VOSModel:
  """The interface of a dense segmenter `apply_fn(params, images) -> logits`.

  The loss is the pixel loss of the logit map and every frame is segmented
  on its own (no state), batched: exactly what the FCN and OSVOS models did
  before the interface existed, so their numbers do not change.
  """

  def make_loss(pixel_loss: PixelLoss) -> LossFn:
    def loss_fn(params, images, masks, valid, rng):
      del rng  # a dense loss draws nothing
      return pixel_loss(apply_fn(params, images)[..., 0], masks, valid)
    return loss_fn

  def predict(params, state, frames, rng):
    del rng
    logits = apply_fn(params, frames)[..., 0].astype(jnp.float32)
    return jax.nn.sigmoid(logits), state

  return VOSModel(make_loss=make_loss, init_state=lambda mask: (),
                  predict=predict, split=split, frozen_mask=frozen_mask)
