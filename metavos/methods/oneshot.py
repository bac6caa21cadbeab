"""One-shot training (Chen, Chan, Zhang): a memory network from ONE labelled
frame per training video.

train: the label set holds one frame per video (`labels.kind` "first", or
"random" with per_video=1), written to `<workdir>/labels.json` with its
labelled fraction in every metrics line. Clips of `oneshot.num_forward` + 1
frames start at the labelled frame; the network runs forward over them on its
own predictions, then backward to the labelled frame
(metavos.memory.forward_backward, variant `oneshot.variant`), and the loss
compares that reconstruction with the one label. The first
`oneshot.static_pretrain_steps` steps see static clips instead: warps of the
labelled frame (metavos.memory.static_clips). Training runs through the
shared `train_loop` (sharding, resume, checkpoints, metrics).
evaluate: exactly STCN's (propagation through memory, shared `eval_loop`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from metavos.memory import (clip_augment, forward_backward, losses, network,
                            static_clips)
from metavos.methods import memory_networks, setup, train_loop

# Evaluation is STCN's: the trained network propagates masks through memory.
load_segmenter = memory_networks.load_segmenter


def clip_loss(params, batch, p, key, *, fns: network.MemoryFns, variant: str,
              unroll: bool | int, remat: bool):
  """Mean forward-backward loss of a batch of clips.

  Reads `batch["masks"][:, 0]` and `batch["valid"][:, 0]` only: the masks
  of every other frame may hold anything.
  """
  keys = jax.random.split(key, batch["frames"].shape[0])

  def one(frames, masks, valid, present, k):
    return forward_backward.forward_backward_loss(
        fns, params, frames, masks, present, valid, variant=variant, key=k,
        p=p, unroll=unroll, remat=remat)

  return jnp.mean(jax.vmap(one)(batch["frames"], batch["masks"][:, 0],
                                batch["valid"][:, 0], batch["present"], keys))


def with_static_clips(batch, key, use: jax.Array,
                      cfg: static_clips.StaticClipConfig):
  """Where `use`, the batch's frames 1.. become warps of its frame 0.

  A select rather than a `lax.cond`: the warps are cheap next to the chain,
  and the batch keeps one static shape and sharding in both stages.
  """
  frames = batch["frames"]
  keys = jax.random.split(key, frames.shape[0])
  fake = jax.vmap(lambda k, f: static_clips.static_clip(
      k, f, frames.shape[1], cfg))(keys, frames[:, 0])
  return {**batch, "frames": jnp.where(use, fake, frames)}


def make_update(config, fns: network.MemoryFns, mesh, labelled_fraction):
  tx = memory_networks.make_optimizer(config)
  b, o = config.loss, config.oneshot
  loss_fn = functools.partial(clip_loss, fns=fns, variant=o.variant,
                              unroll=setup.unroll(config),
                              remat=config.memory.remat)
  static_cfg = static_clips.StaticClipConfig.from_config(o.static)
  aug = clip_augment.from_clip_config(config.clip)

  def update(state, batch, rng):
    step = state["step"]
    loss_key, static_key = jax.random.split(rng)
    if o.static_pretrain_steps:  # Static: no synthesis is compiled when off.
      batch = with_static_clips(batch, static_key,
                                step < o.static_pretrain_steps, static_cfg)
    # After the static warps, so both stages are augmented; a key folded
    # from `rng` leaves the loss and static draws as they are without it.
    if aug is not None:
      batch = clip_augment.augment_batch(jax.random.fold_in(rng, 1), batch,
                                         aug)
    p = losses.bootstrap_fraction(step, b.start_step, b.end_step, b.final_p)
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, p,
                                              loss_key)
    updates, opt = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "bootstrap_p": p,
               "grad_norm": optax.tree.norm(grads),
               "labelled_fraction": jnp.float32(labelled_fraction)}
    return {"params": params, "opt_state": opt, "step": step + 1}, metrics

  return train_loop.jit_update(update, mesh)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Fails early, saying what to change, on a config that is not one-shot."""
  o, lab = config.oneshot, config.labels
  forward_backward.check_variant(o.variant, o.num_forward)
  one_per_video = lab.kind == "first" or (lab.kind == "random"
                                          and lab.per_video == 1)
  if not one_per_video:
    logging.warning("labels.kind=%r (per_video=%d) is not one label per "
                    "video; the loss still reads only each clip's first "
                    "frame.", lab.kind, lab.per_video)


def train(config: ml_collections.ConfigDict, workdir: str):
  """Trains from the label set's frames; returns (params, fns)."""
  check_config(config)
  o = config.oneshot
  return memory_networks.train_on_clips(
      config, workdir, o.num_forward + 1, make_update,
      f" (one-shot {o.variant}, T={o.num_forward})")
