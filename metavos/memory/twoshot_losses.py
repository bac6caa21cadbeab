"""The losses of two-shot training (pure functions of the parameter tree).

Each is `(params, state, batch, p, **static) -> (loss, aux metrics)`, with
`state` the train state (for the EMA teacher and the step), `batch` a clip
batch (metavos.data.clips / twoshot_clips) and `p` the bootstrapped
cross-entropy's fraction. Only the memory-network interface is used
(`chain.run_chain` over `fns`), so any implementation of it trains.
"""

from __future__ import annotations

import functools

import jax

from metavos.memory import chain, confidence, losses


def teacher_loss(params, state, batch, p, *, fns, threshold: float,
                 teacher_memory: bool, unroll: bool | int, remat: bool):
  """Phase 1 after warm-up: real labels where given, the teacher's confident
  predictions on the other frames, ignored elsewhere.

  Returns:
    (loss, aux metrics).
  """

  def one(frames, masks, valid, present, labelled):
    run = functools.partial(chain.run_chain, fns, first_frame=frames[0],
                            first_masks=masks[0], frames=frames[1:],
                            present=present, unroll=unroll)
    t_probs = jax.lax.stop_gradient(run(state["teacher"]).probs)
    # The teacher's masks also go into the student's memory on unlabelled
    # frames: early student predictions there are poor memory.
    mem = ({"memory_masks": t_probs[:, 1:], "memory_mask_given": ~labelled[1:]}
           if teacher_memory else {})
    logits = run(params, remat=remat, **mem).logits
    return (logits, t_probs) + confidence.pseudo_supervise(
        t_probs, masks[1:], valid[1:], labelled[1:], threshold)

  logits, t_probs, masks, valid = jax.vmap(one)(
      batch["frames"], batch["masks"], batch["valid"], batch["present"],
      batch["labelled"])
  loss = losses.bootstrapped_ce(logits, masks, valid, p)
  return loss, {"confident_fraction": confidence.confident_fraction(
      t_probs, batch["labelled"][:, 1:], threshold)}


def self_label_loss(params, state, batch, p, *, fns, threshold: float,
                    start_step: int, unroll: bool | int, remat: bool):
  """Phase 2: pseudo-labels, replaced on unlabelled frames by the student's
  own predictions where they are confident (from `start_step` on)."""

  def one(frames, masks, present):
    return chain.run_chain(fns, params, frames[0], masks[0], frames[1:],
                           present=present, unroll=unroll, remat=remat)

  out = jax.vmap(one)(batch["frames"], batch["masks"], batch["present"])
  probs = jax.lax.stop_gradient(out.probs)
  # Before start_step every frame counts as labelled: nothing is replaced.
  keep = batch["labelled"][:, 1:] | (state["step"] < start_step)
  masks, valid = confidence.pseudo_supervise(
      probs, batch["masks"][:, 1:], batch["valid"][:, 1:], keep, threshold)
  loss = losses.bootstrapped_ce(out.logits, masks, valid, p)
  return loss, {"confident_fraction": confidence.confident_fraction(
      probs, keep, threshold)}


def warmup_loss(params, state, batch, p, *, fns, unroll: bool | int,
                remat: bool):
  """Phase-1 warm-up: STCN's supervised clip loss (on labelled pairs)."""
  del state
  return chain.supervised_clip_loss(params, batch, p, fns=fns, unroll=unroll,
                                    remat=remat), {}


def with_labelled_pairs(params, state, batch, p, *, teacher, warmup):
  """Phase 1 after the warm-up with the labelled pairs kept in the batch
  (`{"clips", "pairs"}`, metavos.data.twoshot_clips.WithLabelledPairs):
  `teacher` on the clips plus `warmup` on the pairs, equally weighted, so
  the real labels keep pulling against the teacher's own mistakes."""
  clip_loss, aux = teacher(params, state, batch["clips"], p)
  pair_loss, _ = warmup(params, state, batch["pairs"], p)
  return clip_loss + pair_loss, {**aux, "teacher_loss": clip_loss,
                                 "pair_loss": pair_loss}
