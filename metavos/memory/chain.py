"""The training chain: predict frames in turn from a growing memory.

Every memory-based trainer builds on `run_chain`. Given a first frame and its
(soft) masks, it predicts each following frame from memory and then adds that
frame to memory with its OWN predicted soft masks (or with given masks, e.g.
a teacher's pseudo-labels), so gradients flow through every step: an error on
frame 2 reaches the prediction of frame 1 through frame 1's memory value.

  supervised clip (STCN):  run_chain(fns, p, frames[0], masks[0], frames[1:])
  one-shot, forward then backward (reconstruct frame 0's mask):
    fwd = run_chain(fns, p, frames[0], masks[0], frames[1:])
    bwd = run_chain(fns, p, frames[-1], fwd.probs[-1, 1:], frames[-2::-1])
    loss(bwd.logits[-1], masks[0])
  two-shot, teacher pseudo-labels into memory:
    run_chain(..., memory_masks=teacher_probs, memory_mask_given=~labelled)

The loop over frames is `jax.lax.scan` over one pure step; `unroll` (from
`metavos.runtime.platform.unroll`) and `remat` (recompute
the step in the backward pass instead of storing its activations) are
options. The key encoder runs on all frames at once before the loop: keys do
not depend on masks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metavos.memory import losses, network

Params = network.Params


class ChainOutput(NamedTuple):
  """Per-frame predictions of `run_chain`.

  Attributes:
    logits: (L, K+1, H, W) aggregated logits, background first.
    probs: (L, K+1, H, W) their softmax over the K+1 classes.
  """
  logits: jax.Array
  probs: jax.Array


def run_chain(fns: network.MemoryModel, params: Params, first_frame: jax.Array,
              first_masks: jax.Array, frames: jax.Array, *,
              present: jax.Array | None = None,
              memory_masks: jax.Array | None = None,
              memory_mask_given: jax.Array | None = None,
              capacity: int | None = None, top_k: int | None = None,
              unroll: bool | int = 1, remat: bool = False) -> ChainOutput:
  """Predicts `frames` in turn from the first frame and its masks (pure).

  Args:
    fns: the network's pure functions (`network.MemoryModel`).
    params: its parameters (the argument to differentiate).
    first_frame: (H, W, 3) in [0, 1], the memory's permanent frame.
    first_masks: (K, H, W) its soft masks (labels, or predictions).
    frames: (L, H, W, 3) the frames to predict, in order.
    present: (K,) bool, objects that exist (padding slots False).
    memory_masks: (L, K, H, W) masks to store frame t with instead of its
      prediction (where `memory_mask_given[t]`). The prediction of frame t
      itself is always returned; only what later frames read changes.
    memory_mask_given: (L,) bool; default all True when memory_masks given.
    capacity: memory slots (static); default L + 1 (nothing evicted). With
      fewer, the oldest non-first frames are evicted.
    top_k: static top-k of the memory read; None = all positions.
    unroll: `lax.scan` unroll (True = fully).
    remat: `jax.checkpoint` the step.

  Returns:
    ChainOutput with per-frame logits and probabilities, (L, K+1, H, W).
  """
  num = frames.shape[0]
  size = frames.shape[1:3]
  if memory_masks is not None and memory_mask_given is None:
    memory_mask_given = jnp.ones((num,), bool)
  feats = fns.encode_key(params, jnp.concatenate([first_frame[None], frames]))
  memory = fns.new_memory(params, first_frame, network.frame_features(
      feats, 0), first_masks, capacity or num + 1)
  feats = jax.tree.map(lambda x: x[1:], feats)

  def predict(memory, f):
    logits, memory = fns.predict(params, memory, f, size, present, top_k)
    return logits, jax.nn.softmax(logits, axis=0), memory

  def step(memory, x):
    frame, f, given_masks, given = x
    logits, probs, memory = predict(memory, f)
    masks = probs[1:]
    if given_masks is not None:
      masks = jnp.where(given, given_masks, masks)
    return fns.memorize(params, memory, frame, f, masks), (logits, probs)

  if remat:
    step = jax.checkpoint(step)
  # The last frame is predicted outside the loop: adding it to memory would
  # be a value encoding nobody reads.
  head = lambda a: None if a is None else a[:-1]
  xs = (frames[:-1], jax.tree.map(head, feats), head(memory_masks),
        head(memory_mask_given))
  memory, (logits, probs) = jax.lax.scan(step, memory, xs, unroll=unroll)
  last_logits, last_probs, _ = predict(memory,
                                       network.frame_features(feats, -1))
  return ChainOutput(jnp.concatenate([logits, last_logits[None]]),
                     jnp.concatenate([probs, last_probs[None]]))


def supervised_clip_loss(params, batch, p, *, fns: network.MemoryModel,
                         unroll: bool | int, remat: bool) -> jax.Array:
  """Bootstrapped CE of frames 1.. of each clip, predicted in a chain from
  frame 0's labels (STCN's training loss; two-shot's warm-up).

  Args:
    batch: frames (B, L, H, W, 3), masks (B, L, K, H, W), valid (B, L, H, W),
      present (B, K).
    p: fraction of the hardest pixels kept (`losses.bootstrap_fraction`).
  """

  def one(frames, masks, present):
    return run_chain(fns, params, frames[0], masks[0], frames[1:],
                     present=present, unroll=unroll, remat=remat).logits

  logits = jax.vmap(one)(batch["frames"], batch["masks"], batch["present"])
  return losses.bootstrapped_ce(logits, batch["masks"][:, 1:],
                                batch["valid"][:, 1:], p)
