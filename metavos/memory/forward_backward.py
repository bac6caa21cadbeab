"""One-shot training's loss: forward from the labelled frame, back to it.

Chen, Chan and Zhang, "One-shot training for video object segmentation":
a training video has ONE labelled frame. From it the memory network runs
forward over the next T frames using only its own predictions, then runs
backward and reconstructs the labelled frame's mask; the loss compares that
reconstruction with the label, so no other frame's mask is ever read.

  forward:  frame 0 (label) -> 1 -> 2 -> ... -> T   (own soft masks)
  backward, from frame T with its forward prediction, to frame 0:
    "t_step"    T -> T-1 -> ... -> 1 -> 0   (the same frames in reverse)
    "one_step"  T -> 0
    "two_step"  T -> i -> 0, i drawn uniformly from 1..T-1 with `key`

Both legs are `chain.run_chain` (one `lax.scan` each, optional unroll and
remat), so the whole forward-backward chain is one pure function of the
parameters with gradients through every step: the backward leg starts from
the forward leg's last soft prediction, which depends on every forward step.
Shapes are static for every variant (the two-step intermediate frame is a
dynamic index), so one compiled program serves all clips.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metavos.memory import chain, losses, network

VARIANTS = ("t_step", "one_step", "two_step")


def check_variant(variant: str, num_forward: int) -> None:
  """Raises a ValueError saying how to fix an unusable (variant, T)."""
  if variant not in VARIANTS:
    raise ValueError(f"oneshot.variant must be one of {VARIANTS}, got "
                     f"{variant!r}.")
  if num_forward < 1:
    raise ValueError(f"oneshot.num_forward must be >= 1, got {num_forward}.")
  if variant == "two_step" and num_forward < 2:
    raise ValueError("oneshot.variant='two_step' needs an intermediate frame: "
                     "set oneshot.num_forward >= 2 (or use 'one_step').")


def backward_frames(frames: jax.Array, variant: str,
                    key: jax.Array | None = None) -> jax.Array:
  """The frames the backward leg predicts, in order, ending at frame 0.

  Args:
    frames: (T+1, H, W, 3), frame 0 labelled.
    variant: one of VARIANTS.
    key: PRNG key, read by "two_step" only.

  Returns:
    (T, ...) for "t_step", (1, ...) for "one_step", (2, ...) for "two_step".
  """
  t = frames.shape[0] - 1
  check_variant(variant, t)
  if variant == "t_step":
    return frames[t - 1::-1]
  if variant == "one_step":
    return frames[:1]
  if key is None:
    raise ValueError("variant='two_step' draws its intermediate frame: pass "
                     "a PRNG key.")
  i = jax.random.randint(key, (), 1, t)  # in [1, T-1]
  middle = jax.lax.dynamic_index_in_dim(frames, i, keepdims=False)
  return jnp.stack([middle, frames[0]])


def forward_backward(fns: network.MemoryFns, params: network.Params,
                     frames: jax.Array, first_masks: jax.Array,
                     present: jax.Array | None = None, *, variant: str,
                     key: jax.Array | None = None, top_k: int | None = None,
                     unroll: bool | int = 1, remat: bool = False
                     ) -> tuple[chain.ChainOutput, chain.ChainOutput]:
  """Runs the forward leg and the backward leg (pure).

  Args:
    fns: the network's pure functions.
    params: its parameters.
    frames: (T+1, H, W, 3) in [0, 1]; frame 0 is the labelled frame.
    first_masks: (K, H, W) frame 0's one-hot masks, the only label read.
    present: (K,) bool, objects that exist (padding slots False).
    variant: one of VARIANTS.
    key: PRNG key for "two_step".
    top_k: static top-k of the memory read; None = all positions.
    unroll: `lax.scan` unroll of both legs (True = fully).
    remat: `jax.checkpoint` each chain step.

  Returns:
    (forward, backward) ChainOutputs; forward has T frames (1..T),
    backward ends with the reconstruction of frame 0.
  """
  back = backward_frames(frames, variant, key)
  kw = dict(present=present, top_k=top_k, unroll=unroll, remat=remat)
  fwd = chain.run_chain(fns, params, frames[0], first_masks, frames[1:], **kw)
  # Frame T enters the backward memory with its own soft prediction, so the
  # reconstruction's error flows back through every forward step.
  bwd = chain.run_chain(fns, params, frames[-1], fwd.probs[-1, 1:], back,
                        **kw)
  return fwd, bwd


def forward_backward_loss(fns: network.MemoryFns, params: network.Params,
                          frames: jax.Array, first_masks: jax.Array,
                          present: jax.Array | None, valid: jax.Array, *,
                          variant: str, key: jax.Array | None = None,
                          p: jax.Array | float = 1.0,
                          top_k: int | None = None, unroll: bool | int = 1,
                          remat: bool = False) -> jax.Array:
  """Bootstrapped CE of the reconstructed labelled frame against its label.

  Args:
    fns, params, frames, first_masks, present, variant, key, top_k, unroll,
      remat: as in `forward_backward`.
    valid: (H, W) bool, frame 0's non-void pixels.
    p: bootstrapping fraction (metavos.memory.losses.bootstrapped_ce).

  Returns:
    Scalar loss; it reads no mask but `first_masks`.
  """
  _, bwd = forward_backward(fns, params, frames, first_masks, present,
                            variant=variant, key=key, top_k=top_k,
                            unroll=unroll, remat=remat)
  return losses.bootstrapped_ce(bwd.logits[-1], first_masks, valid, p)
