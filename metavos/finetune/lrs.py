"""Learning-rate trees for the inner SGD loop.

A learning-rate tree is stored compactly and broadcast against the parameter
tree when used. Modes:

- "neuron" (e-OSVOS): one rate per output neuron. Flax kernels are
  `(kh, kw, in, out)`, so a kernel gets `(1, 1, 1, out)`; a bias or norm
  parameter `(C,)` gets `(C,)`. Together with the bias rate this is "one
  rate for each output channel's weights, one for its bias".
- "tensor": one scalar per parameter tensor.
- "parameter": one rate per scalar parameter (same shape as the parameter).
- "global": a single scalar shared by every parameter (hand-tuned OSVOS, or
  the "meta-learned init + single rate" ablation).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Params = Any
LRTree = Any
MODES = ("neuron", "tensor", "parameter", "global")


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(
        f"Unknown learning-rate mode {mode!r}; choose one of {MODES} "
        "(config field meta.lr_mode).")


def lr_shape(param_shape: tuple[int, ...], mode: str) -> tuple[int, ...]:
  """Shape of the rate that multiplies a parameter of `param_shape`."""
  _check_mode(mode)
  if mode == "parameter":
    return tuple(param_shape)
  if mode in ("tensor", "global") or not param_shape:
    return ()
  # Neuron axis is last for kernels and the only axis for biases and norms.
  return (1,) * (len(param_shape) - 1) + (param_shape[-1],)


def init_lrs(params: Params, mode: str, init: float = 1e-3,
             jitter: float = 0.0, rng: jax.Array | None = None) -> LRTree:
  """Builds the learning-rate tree for `params`.

  Args:
    params: parameter pytree (arrays or ShapeDtypeStructs).
    mode: one of MODES.
    init: initial rate.
    jitter: if > 0, rates are drawn uniformly from init * [1 - jitter,
      1 + jitter] so neurons do not start identical.
    rng: needed when jitter > 0.

  Returns:
    A scalar array for mode "global", else a pytree matching `params`.
  """
  _check_mode(mode)
  if jitter and rng is None:
    raise ValueError("init_lrs: jitter > 0 needs an rng.")

  def make(shape, key):
    if not jitter:
      return jnp.full(shape, init, jnp.float32)
    u = jax.random.uniform(key, shape, jnp.float32, -jitter, jitter)
    return init * (1.0 + u)

  if mode == "global":
    return make((), rng)
  leaves, treedef = jax.tree.flatten(params)
  keys = (list(jax.random.split(rng, len(leaves))) if jitter
          else [None] * len(leaves))
  return jax.tree.unflatten(
      treedef, [make(lr_shape(p.shape, mode), k) for p, k in zip(leaves, keys)])


def expand_lrs(lrs: LRTree, params: Params) -> LRTree:
  """Returns a tree matching `params` whose leaves broadcast against them."""
  if isinstance(lrs, jax.Array) and lrs.ndim == 0:
    return jax.tree.map(lambda _: lrs, params)
  return lrs


def clamp_lrs(lrs: LRTree) -> LRTree:
  """Learning rates stay non-negative after every outer update."""
  return jax.tree.map(lambda x: jnp.maximum(x, 0.0), lrs)


def lr_summary(lrs: LRTree, frozen=None) -> dict[str, float]:
  """Mean/min/max over all rates, for logging; with `frozen` (a tree of
  bools like the parameters), over the adapted layers' rates only."""
  leaves = jax.tree.leaves(lrs)
  if frozen is not None and len(leaves) > 1:
    leaves = [x for x, f in zip(leaves, jax.tree.leaves(frozen)) if not f]
  flat = jnp.concatenate([jnp.ravel(x) for x in leaves])
  return {"lr_mean": float(flat.mean()), "lr_min": float(flat.min()),
          "lr_max": float(flat.max())}
