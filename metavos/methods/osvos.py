"""OSVOS: a parent network, then one-shot fine-tuning per object.

train: the parent network learns foreground vs background on all annotated
frames of the training videos with class-balanced cross-entropy; the OSVOS
head (`model.name=osvos`) adds deep supervision on its side outputs with a
weight that decays linearly to 0 over training.
evaluate: per object, SGD with momentum on the annotated frame(s) with the
same inner loop as e-OSVOS (one global hand-tuned rate), then every frame is
segmented independently.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from metavos.data import sampling
from metavos.finetune import augment as augment_lib
from metavos.finetune import losses
from metavos.finetune import video as video_lib
from metavos.methods import setup, train_loop
from metavos.runtime import checkpoint, sharding


def frozen_mask(config: ml_collections.ConfigDict, model: setup.Model):
  """The parameters `parent.frozen_stages` keeps at their pretrained values
  while the parent trains (a tree of bools), or None: every layer trains."""
  return setup.frozen_mask(model, config.parent.frozen_stages,
                           "parent.frozen_stages")


def make_optimizer(config: ml_collections.ConfigDict, frozen=None):
  """The parent's optimiser; `frozen` as `frozen_mask` returns it."""
  p = config.parent
  if p.optimizer == "adam":
    tx = optax.adamw(p.lr, weight_decay=p.weight_decay)
  elif p.optimizer == "sgd":
    tx = optax.chain(optax.add_decayed_weights(p.weight_decay),
                     optax.sgd(p.lr, momentum=0.9))
  else:
    raise ValueError(f"config.parent.optimizer must be 'adam' or 'sgd', got "
                     f"{p.optimizer!r}.")
  return train_loop.freeze(tx, frozen)


def parent_loss(params, batch, side_weight, rng, *, model: setup.Model,
                loss_name: str):
  """Fused-output loss plus `side_weight` x the mean side-output loss.

  A detector (no dense logits) is trained with its own loss on the
  foreground of every object, through the model interface.
  """
  loss = losses.get_loss(loss_name)
  if model.apply_with_aux_fn is None:
    main = model.vos.make_loss(loss)(params, batch["image"], batch["mask"],
                                     batch["valid"], rng)
    return main, {"main_loss": main, "side_loss": jnp.zeros(())}
  logits, side = model.apply_with_aux_fn(params, batch["image"])
  main = loss(logits[..., 0], batch["mask"], batch["valid"])
  aux = (sum(loss(s[..., 0], batch["mask"], batch["valid"]) for s in side)
         / len(side)) if side else jnp.zeros(())
  return main + side_weight * aux, {"main_loss": main, "side_loss": aux}


def augment_parent_batch(batch: dict, rng, augment: dict | None,
                         crop_size: tuple[int, int] | None = None) -> dict:
  """One random flip/scale/rotation per frame (OSVOS' parent augmentation),
  then a random `crop_size` window of each; the batch unchanged when both
  are off."""
  if not augment and not crop_size:
    return batch

  def one(key, image, mask, valid):
    if augment:
      image, mask, valid = augment_lib.augment(key, image, mask, valid,
                                               **augment)
    if crop_size:
      image, mask, valid = augment_lib.random_crop(
          jax.random.fold_in(key, 2), image, mask, valid, crop_size)
    return image, mask, valid

  keys = jax.random.split(rng, batch["image"].shape[0])
  image, mask, valid = jax.vmap(one)(keys, batch["image"], batch["mask"],
                                     batch["valid"])
  return {"image": image, "mask": mask, "valid": valid}


def make_update(config, model: setup.Model, mesh):
  frozen = frozen_mask(config, model)
  tx = make_optimizer(config, frozen)
  total = config.train.num_steps
  decay = config.parent.side_weight_decay
  augment = dict(config.parent.augment) if config.parent.augment else None
  crop_size = (tuple(config.parent.crop_size) if config.parent.get("crop_size")
               else None)

  def update(state, batch, rng):
    batch = augment_parent_batch(batch, jax.random.fold_in(rng, 1), augment,
                                 crop_size)
    # Deep-supervision weight decays linearly from 1 to 0 over training.
    w = (jnp.maximum(0.0, 1.0 - state["step"] / total) if decay
         else jnp.ones(()))
    def loss_fn(params):
      if frozen is not None:
        # No backward pass through the frozen stages (the optimiser leaves
        # them unchanged anyway).
        params = jax.tree.map(
            lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
      return parent_loss(params, batch, w, rng, model=model,
                         loss_name=config.parent.loss)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"])
    updates, opt = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "side_weight": w,
               "grad_norm": optax.tree.norm(grads), **aux}
    return {"params": params, "opt_state": opt,
            "step": state["step"] + 1}, metrics

  return train_loop.jit_update(update, mesh)


def train(config: ml_collections.ConfigDict, workdir: str):
  mesh = sharding.make_mesh(config.num_devices or None)
  model = setup.build_model(config, config.seed)
  sampler = sampling.FrameSampler(setup.train_videos(config, workdir),
                                  config.seed)
  logging.info("%d annotated training frames", len(sampler))

  state = train_loop.run(
      config, workdir, mesh=mesh,
      init_state=lambda: train_loop.initial_state(
          model.params, make_optimizer(config, frozen_mask(config, model)),
          mesh),
      update=make_update(config, model, mesh),
      sample=train_loop.batch_sampler(sampler, config.train.batch_size),
      items_per_step=config.train.batch_size,
      init_from=config.train.init_from)
  return state["params"], model


def load_segmenter(config: ml_collections.ConfigDict, workdir: str,
                   trained=None) -> video_lib.BoundSegmenter:
  """The parent network (`trained` = `(params, model)` as `train` returned
  it, else restored) and one global hand-tuned rate, bound to a segmenter."""
  params, model = trained or (None, setup.build_model(config, config.seed))
  if params is None:
    params = checkpoint.restore_subtree(
        setup.trained_checkpoint(config, workdir), "params", model.params)
  return video_lib.BoundSegmenter(
      setup.video_segmenter(config, model), params,
      jnp.asarray(config.finetune.lr, jnp.float32))
