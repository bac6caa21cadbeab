"""The one inner loop: SGD on a support loss, as a pure `lax.scan`.

OSVOS and e-OSVOS share it and differ only in how it is parameterised:

- e-OSVOS: `params` is the meta-learned initialisation, `lrs` the meta-learned
  neuron-level rates, `momentum=0` (plain SGD, `theta <- theta - lrs * grad`),
  and the whole loop is differentiated by the outer meta-optimiser.
- OSVOS: `params` is the parent network, `lrs` one hand-tuned global rate,
  `momentum=0.9`, and nothing is differentiated through the loop; or
  `optimizer="adam"` (the rate then scales Adam's normalised direction, and
  `momentum` is Adam's first-moment decay), the optimiser the parent was
  trained with.

`unroll` is decided by platform (metavos.runtime.platform.unroll: full on
CPU, rolled on accelerators); long test-time runs are split into jitted
chunks by the caller (see `metavos.finetune.video`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metavos.finetune import lrs as lrs_lib

Params = Any
PRNGKey = jax.Array
# loss_fn(params, rng) -> scalar support loss; rng draws the augmentation.
SupportLoss = Callable[[Params, PRNGKey], jax.Array]


OPTIMIZERS = ("sgd", "adam")


class AdaptResult(NamedTuple):
  params: Params
  velocity: Any            # optimiser state: SGD's momentum buffer (None
                           # when momentum == 0) or Adam's moments
  losses: jax.Array        # (num_steps,) support loss before each step


def _adam(momentum: float) -> optax.GradientTransformation:
  return optax.scale_by_adam(b1=momentum)


def check_optimizer(optimizer: str) -> None:
  """Raises ValueError naming `finetune.optimizer` unless it is one of
  OPTIMIZERS."""
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"config.finetune.optimizer={optimizer!r}: choose one "
                     f"of {OPTIMIZERS}.")


def init_state(params: Params, optimizer: str = "sgd",
               momentum: float = 0.0) -> Any:
  """The inner optimiser's starting state for `params`: zero momentum for
  SGD with momentum, None for plain SGD, zero moments for Adam."""
  check_optimizer(optimizer)
  if optimizer == "adam":
    return _adam(momentum).init(params)
  return jax.tree.map(jnp.zeros_like, params) if momentum else None


def sgd_update(params: Params, grads: Params, lrs: Params,
               velocity: Params | None, momentum: float):
  """One SGD(+momentum) step with per-leaf broadcastable learning rates.

  Momentum follows PyTorch's SGD (`v <- mu * v + g; theta <- theta - lr * v`)
  so OSVOS schedules carry over unchanged.
  """
  if momentum:
    velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
    direction = velocity
  else:
    direction = grads
  params = jax.tree.map(lambda p, lr, d: p - lr * d, params, lrs, direction)
  return params, velocity


def clip_by_global_norm(grads: Params, max_norm: float) -> Params:
  """`grads` scaled by min(1, max_norm / ||grads||), the norm over the whole
  tree (optax.clip_by_global_norm's rule); max_norm 0 leaves them as they
  are."""
  if not max_norm:
    return grads
  norm = optax.global_norm(grads)
  scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
  return jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)


def adapt(loss_fn: SupportLoss, params: Params, lrs: lrs_lib.LRTree,
          rng: PRNGKey, num_steps: int, *, momentum: float = 0.0,
          first_order: bool = True, remat: bool = False,
          unroll: bool | int = True, max_grad_norm: float = 0.0,
          velocity: Any = None, optimizer: str = "sgd") -> AdaptResult:
  """Runs `num_steps` of SGD (or Adam) on `loss_fn` starting from `params`.

  Args:
    loss_fn: pure support loss `(params, rng) -> scalar`; `rng` is fresh for
      every step so augmentation is redrawn each step.
    params: initial parameters (differentiable: the meta-learned init).
    lrs: learning-rate tree from `metavos.finetune.lrs` (differentiable).
    rng: PRNG key; step t uses `fold_in(rng, t)`-style split keys.
    num_steps: T, static.
    momentum: 0 for plain SGD (e-OSVOS); 0.9 for OSVOS; Adam's b1.
    first_order: stop gradients through the inner gradients (the default
      e-OSVOS approximation); False gives the full second-order meta-gradient.
    remat: rematerialise each step in the backward pass (memory O(1) in T
      for the activations at the cost of recomputation).
    unroll: `lax.scan` unrolling; True unrolls fully (fast on XLA:CPU),
      1 keeps a rolled loop (fast to compile, what accelerators want).
    max_grad_norm: each step's gradient is scaled down to at most this
      global norm before the update (0: never): one hand-tuned rate then
      cannot blow up on a frame whose loss is unusually steep.
    velocity: optimiser state to continue from (chunked adaptation);
      None starts from `init_state`.
    optimizer: "sgd" (the update is `lrs * grad`, or `lrs * velocity`) or
      "adam" (`lrs` times Adam's bias-corrected direction).

  Returns:
    AdaptResult with the adapted parameters, momentum buffer and losses.
  """
  lr_tree = lrs_lib.expand_lrs(lrs, params)
  if velocity is None:
    velocity = init_state(params, optimizer, momentum)
  grad_fn = jax.value_and_grad(loss_fn)

  def update(theta, grads, state):
    if optimizer == "adam":
      direction, state = _adam(momentum).update(grads, state)
      return jax.tree.map(lambda p, lr, d: p - lr * d, theta, lr_tree,
                          direction), state
    return sgd_update(theta, grads, lr_tree, state, momentum)

  def step(carry, key):
    theta, state = carry
    loss, grads = grad_fn(theta, key)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    grads = clip_by_global_norm(grads, max_grad_norm)
    return update(theta, grads, state), loss

  if remat:
    step = jax.checkpoint(step)
  keys = jax.random.split(rng, num_steps)
  (params, velocity), losses = jax.lax.scan(
      step, (params, velocity), keys, unroll=unroll)
  return AdaptResult(params, velocity, losses)
