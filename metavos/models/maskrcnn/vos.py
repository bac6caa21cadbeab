"""Mask R-CNN behind the `VOSModel` interface (metavos.models.interface).

- loss: the sum of the detector's loss terms on each image, averaged over
  the images (support copies, query frames), for one object.
- state: the object's box in the previous frame, starting from the box of
  its annotated mask.
- predict: the backbone and FPN run on all frames of a call at once; the
  detection heads then scan over the frames in order, carrying the box.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from metavos.models import interface
from metavos.models.maskrcnn import boxes as boxes_lib
from metavos.models.maskrcnn import losses
from metavos.models.maskrcnn import tracking


def loss_terms(graphdef: nnx.GraphDef, params, images: jax.Array,
               masks: jax.Array, valid: jax.Array, rng: jax.Array,
               pixel_loss) -> dict[str, jax.Array]:
  """Each loss term averaged over the (N, H, W, 3) images."""
  pyramid = nnx.merge(graphdef, params).pyramid(images)
  keys = jax.random.split(rng, images.shape[0])

  def one(levels, mask, val, key):
    model = nnx.merge(graphdef, params)
    return losses.image_loss(model, levels, mask, val, key, pixel_loss)

  terms = jax.vmap(one)(pyramid, masks, valid, keys)
  return jax.tree.map(jnp.mean, terms)


def make_vos_model(graphdef: nnx.GraphDef) -> interface.VOSModel:
  """The interface of the `MaskRCNN` module that `graphdef` describes."""

  def make_loss(pixel_loss):
    def loss_fn(params, images, masks, valid, rng):
      terms = loss_terms(graphdef, params, images, masks, valid, rng,
                         pixel_loss)
      return sum(terms.values())
    return loss_fn

  def init_state(mask):
    return boxes_lib.mask_to_box(mask)[0]

  def predict(params, box, frames, rng):
    height, width = frames.shape[1:3]
    pyramid = nnx.merge(graphdef, params).pyramid(frames)

    def step(prev_box, xs):
      levels, key = xs
      model = nnx.merge(graphdef, params)
      probs, box, _ = tracking.detect(model, levels, prev_box, key, height,
                                      width)
      return box, probs

    keys = jax.random.split(rng, frames.shape[0])
    box, probs = jax.lax.scan(step, box, (pyramid, keys))
    return probs, box

  return interface.VOSModel(make_loss=make_loss, init_state=init_state,
                            predict=predict)
