"""The inner loop against hand-written SGD, and its meta-gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metavos.finetune import inner_loop
from metavos.finetune import lrs as lrs_lib


def _problem():
  """A tiny least-squares 'network' with kernel/bias leaves."""
  k1, k2 = jax.random.split(jax.random.key(0))
  x = jax.random.normal(k1, (16, 3))
  y = jax.random.normal(k2, (16, 2))
  params = {"dense": {"kernel": jnp.full((3, 2), 0.1), "bias": jnp.zeros(2)}}

  def loss_fn(p, rng):
    noise = 0.01 * jax.random.normal(rng, x.shape)  # stands in for augmentation
    pred = (x + noise) @ p["dense"]["kernel"] + p["dense"]["bias"]
    return jnp.mean((pred - y) ** 2)

  return params, loss_fn


def test_adapt_matches_python_sgd_with_neuron_rates():
  params, loss_fn = _problem()
  lrs = lrs_lib.init_lrs(params, "neuron", 0.1)
  lrs["dense"]["kernel"] = jnp.array([[0.1, 0.3]])
  rng = jax.random.key(1)
  got = inner_loop.adapt(loss_fn, params, lrs, rng, 4).params
  expected = params
  for key in jax.random.split(rng, 4):
    g = jax.grad(loss_fn)(expected, key)
    expected = jax.tree.map(lambda p, lr, gg: p - lr * gg, expected, lrs, g)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_momentum_matches_optax_sgd():
  params, loss_fn = _problem()
  rng = jax.random.key(2)
  got = inner_loop.adapt(loss_fn, params, jnp.asarray(0.05), rng, 5,
                         momentum=0.9).params
  tx = optax.sgd(0.05, momentum=0.9)
  p, st = params, tx.init(params)
  for key in jax.random.split(rng, 5):
    u, st = tx.update(jax.grad(loss_fn)(p, key), st)
    p = optax.apply_updates(p, u)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(p)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_adam_matches_optax_adam_and_continues_across_chunks():
  params, loss_fn = _problem()
  rng = jax.random.key(3)
  got = inner_loop.adapt(loss_fn, params, jnp.asarray(0.01), rng, 6,
                         momentum=0.9, optimizer="adam")
  tx = optax.adam(0.01, b1=0.9)
  p, st = params, tx.init(params)
  for key in jax.random.split(rng, 6):
    u, st = tx.update(jax.grad(loss_fn)(p, key), st)
    p = optax.apply_updates(p, u)
  for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(p)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # Two chunks of 3 steps carrying the moments equal the 6 steps' first
  # half continued (the second chunk's keys are its own).
  k1, k2 = jax.random.split(rng)
  half = inner_loop.adapt(loss_fn, params, jnp.asarray(0.01), k1, 3,
                          momentum=0.9, optimizer="adam")
  rest = inner_loop.adapt(loss_fn, half.params, jnp.asarray(0.01), k2, 3,
                          momentum=0.9, optimizer="adam",
                          velocity=half.velocity)
  p, st = params, tx.init(params)
  for key in [*jax.random.split(k1, 3), *jax.random.split(k2, 3)]:
    u, st = tx.update(jax.grad(loss_fn)(p, key), st)
    p = optax.apply_updates(p, u)
  for a, b in zip(jax.tree.leaves(rest.params), jax.tree.leaves(p)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="finetune.optimizer"):
    inner_loop.init_state(params, "lbfgs")


def test_max_grad_norm_clips_each_step_to_that_global_norm():
  params, loss_fn = _problem()
  rng = jax.random.key(4)
  lr = 0.1
  norm = float(optax.global_norm(jax.grad(loss_fn)(params,
                                                   jax.random.split(rng, 1)[0])))
  assert norm > 0.1  # the first step's gradient is large enough to clip
  step = lambda clip: inner_loop.adapt(loss_fn, params, jnp.asarray(lr), rng,
                                       1, max_grad_norm=clip).params
  moved = lambda p: float(optax.global_norm(
      jax.tree.map(lambda a, b: a - b, p, params)))
  # Clipped: the update is lr * max_norm long, in the gradient's direction.
  clipped, free = step(norm / 4), step(0.0)
  np.testing.assert_allclose(moved(clipped), lr * norm / 4, rtol=1e-5)
  for a, b, p0 in zip(jax.tree.leaves(clipped), jax.tree.leaves(free),
                      jax.tree.leaves(params)):
    np.testing.assert_allclose(a - p0, (b - p0) / 4, rtol=1e-5, atol=1e-8)
  # A norm above the gradient's changes nothing; 0 means no clipping.
  for a, b in zip(jax.tree.leaves(step(norm * 2)), jax.tree.leaves(free)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(moved(free), lr * norm, rtol=1e-5)


@pytest.mark.parametrize("unroll", [True, 1, 2])
def test_unroll_and_remat_do_not_change_results(unroll):
  params, loss_fn = _problem()
  lrs = lrs_lib.init_lrs(params, "neuron", 0.1)

  def meta_loss(p, lr, remat):
    out = inner_loop.adapt(loss_fn, p, lr, jax.random.key(3), 4,
                           first_order=False, remat=remat, unroll=unroll)
    return loss_fn(out.params, jax.random.key(9))

  ref = jax.grad(meta_loss, argnums=(0, 1))(params, lrs, False)
  got = jax.grad(meta_loss, argnums=(0, 1))(params, lrs, True)
  for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_first_order_drops_only_second_order_terms():
  params, loss_fn = _problem()
  lrs = lrs_lib.init_lrs(params, "global", 0.1)

  def meta_loss(p, lr, first_order):
    out = inner_loop.adapt(loss_fn, p, lr, jax.random.key(4), 1,
                           first_order=first_order)
    return loss_fn(out.params, jax.random.key(9))

  # One step: d/dlr L(theta - lr g) = -<g_query, g_support> in both modes.
  g_support = jax.grad(loss_fn)(params, jax.random.split(jax.random.key(4), 1)[0])
  theta1 = jax.tree.map(lambda p, g: p - 0.1 * g, params, g_support)
  g_query = jax.grad(loss_fn)(theta1, jax.random.key(9))
  expected_lr_grad = -sum(jnp.vdot(a, b) for a, b in zip(
      jax.tree.leaves(g_query), jax.tree.leaves(g_support)))
  for fo in (True, False):
    lr_grad = jax.grad(meta_loss, argnums=1)(params, lrs, fo)
    np.testing.assert_allclose(lr_grad, expected_lr_grad, rtol=1e-5)
  # First order: d/dtheta0 equals the query gradient at theta1 exactly;
  # second order differs by the Hessian term.
  fo_init = jax.grad(meta_loss)(params, lrs, True)
  so_init = jax.grad(meta_loss)(params, lrs, False)
  for a, b in zip(jax.tree.leaves(fo_init), jax.tree.leaves(g_query)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  diff = sum(float(jnp.abs(a - b).sum()) for a, b in zip(
      jax.tree.leaves(fo_init), jax.tree.leaves(so_init)))
  assert diff > 1e-4


def test_losses_are_recorded_per_step_and_decrease():
  params, loss_fn = _problem()
  out = inner_loop.adapt(loss_fn, params, jnp.asarray(0.1), jax.random.key(5),
                         20)
  assert out.losses.shape == (20,)
  assert out.losses[-1] < 0.8 * out.losses[0]
