"""STCN: a memory network trained fully supervised on short clips.

train: clips of `clip.length` (3) frames from the label set (here every
annotated frame); the first frame's masks go into memory, frames 1 and 2 are
predicted in turn from memory (frame 1 joins memory with its own predicted
soft masks) and scored against their labels with bootstrapped
cross-entropy. Training runs through the shared `train_loop` (sharding,
resume, checkpoints, metrics); the label set is written to
`<workdir>/labels.json` and its labelled fraction goes into every metrics
line.
evaluate: masks are propagated from the annotated frame(s) through memory
(metavos.memory.propagate), scored by the shared `eval_loop`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from metavos.memory import chain, clip_augment, losses, network
from metavos.methods import memory_networks, setup, train_loop


clip_loss = chain.supervised_clip_loss


def make_update(config, fns: network.MemoryFns, mesh, labelled_fraction):
  tx = memory_networks.make_optimizer(config)
  b = config.loss
  loss_fn = functools.partial(clip_loss, fns=fns, unroll=setup.unroll(config),
                              remat=config.memory.remat)
  aug = clip_augment.from_clip_config(config.clip)
  static = config.clip.static_frames
  if static and aug is None:
    raise ValueError("clip.static_frames repeats each clip's first frame; "
                     "without motion there is nothing to learn: set "
                     "--config.clip.augment.enabled=True.")

  def update(state, batch, rng):
    if static:
      batch = clip_augment.static_batch(batch)
    if aug is not None:  # The only randomness of supervised clip training.
      batch = clip_augment.augment_batch(rng, batch, aug)
    p = losses.bootstrap_fraction(state["step"], b.start_step, b.end_step,
                                  b.final_p)
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, p)
    updates, opt = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "bootstrap_p": p,
               "grad_norm": optax.tree.norm(grads),
               "labelled_fraction": jnp.float32(labelled_fraction)}
    return {"params": params, "opt_state": opt,
            "step": state["step"] + 1}, metrics

  return train_loop.jit_update(update, mesh)


def train(config: ml_collections.ConfigDict, workdir: str):
  """Trains on clips of `clip.length` frames; returns (params, fns)."""
  return memory_networks.train_on_clips(config, workdir, config.clip.length,
                                        make_update)


# Evaluation: the trained network propagates masks through memory.
load_segmenter = memory_networks.load_segmenter
