"""Tests for metavos.finetune.losses: hand values, a reference, gradients."""

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.finetune import losses

LOSS_NAMES = ('lovasz_hinge', 'bce', 'balanced_bce')

# Jitted once per loss: eager op-by-op dispatch compiles every primitive.
lovasz_hinge = jax.jit(losses.lovasz_hinge, static_argnames='per_image')
binary_cross_entropy = jax.jit(losses.binary_cross_entropy)
class_balanced_cross_entropy = jax.jit(
    losses.class_balanced_cross_entropy, static_argnames='normalize')


@functools.cache
def _jitted(name):
  return jax.jit(losses.get_loss(name))


pytestmark = pytest.mark.usefixtures("fast_compile")


@contextlib.contextmanager
def _float64():
  """Enables float64 for a finite-difference check, then restores the flag."""
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  try:
    yield
  finally:
    jax.config.update('jax_enable_x64', previous)


def _reference_lovasz_image(logits, labels, valid):
  """Lovász hinge of one image, straight from the definition, in float64.

  Sorts the hinge errors of the valid pixels in decreasing order, grows the
  set M of "mispredicted" pixels one at a time, and weights each error by the
  increase of the Jaccard loss |M| / |Y+ u M| (0 for an empty union).
  """
  logits = np.asarray(logits, np.float64)[valid]
  labels = np.asarray(labels)[valid]
  errors = 1.0 - logits * (2.0 * labels - 1.0)
  positives = set(np.flatnonzero(labels == 1).tolist())
  mispredicted = set()
  loss, previous = 0.0, 0.0
  for i in np.argsort(-errors, kind='stable').tolist():
    mispredicted.add(i)
    union = positives | mispredicted
    jaccard = len(mispredicted) / len(union)
    loss += max(errors[i], 0.0) * (jaccard - previous)
    previous = jaccard
  return loss


def _reference_lovasz(logits, labels, valid):
  """Mean over images of (N, H, W) inputs."""
  return np.mean([_reference_lovasz_image(*args)
                  for args in zip(logits, labels, valid)])


def _random_case(seed, shape=(3, 8, 9), label_rate=0.3, valid_rate=0.8):
  rng = np.random.default_rng(seed)
  logits = (2.0 * rng.standard_normal(shape)).astype(np.float32)
  labels = (rng.random(shape) < label_rate).astype(np.int32)
  valid = rng.random(shape) < valid_rate
  return logits, labels, valid


def test_lovasz_hand_value_four_pixels():
  # logits x = [2, -1, 0.5, -0.25], labels y = [1, 0, 0, 1].
  # errors 1 - x * (2y - 1) = [-1, 0, 1.5, 1.25].
  # Sorted decreasing: 1.5 (y=0), 1.25 (y=1), 0 (y=0), -1 (y=1); |Y+| = 2.
  # Jaccard loss |M| / |Y+ u M| of the growing prefixes M:
  #   {p2}: 1/3, {p2, p3}: 2/3, {p2, p3, p1}: 3/4, all: 4/4.
  # Increments (weights): 1/3, 1/3, 1/12, 1/4.
  # Loss = 1.5/3 + 1.25/3 + 0 * 1/12 + relu(-1) * 1/4 = 11/12.
  logits = jnp.array([[2.0, -1.0], [0.5, -0.25]])
  labels = jnp.array([[1, 0], [0, 1]])
  np.testing.assert_allclose(lovasz_hinge(logits, labels), 11 / 12,
                             rtol=1e-6)
  # Only pixels 2 and 3 carry weight, with d errors / d logits = +1, -1.
  np.testing.assert_allclose(
      jax.grad(lovasz_hinge)(logits, labels),
      [[0.0, 0.0], [1 / 3, -1 / 3]], atol=1e-6)


def test_lovasz_hand_value_all_negative_and_void():
  # No positives: the Jaccard loss jumps from 0 to 1 at the first pixel and
  # stays there, so the loss is the largest hinge error 1 + x.
  logits = jnp.array([[0.5, -2.0], [0.0, 1.0]])
  labels = jnp.zeros((2, 2), jnp.int32)
  np.testing.assert_allclose(lovasz_hinge(logits, labels), 2.0)
  # Voiding the pixel with logit 1 leaves 1 + 0.5 as the largest error.
  valid = jnp.array([[True, True], [True, False]])
  np.testing.assert_allclose(lovasz_hinge(logits, labels, valid), 1.5)
  # No valid pixel at all: loss 0 and zero gradient, not NaN.
  none_valid = jnp.zeros((2, 2), bool)
  assert float(lovasz_hinge(logits, labels, none_valid)) == 0.0
  grads = jax.grad(lovasz_hinge)(logits, labels, none_valid)
  np.testing.assert_array_equal(grads, np.zeros((2, 2)))


def test_lovasz_zero_for_margin_one_predictions():
  labels = jnp.array([[1, 0, 1], [0, 0, 1]])
  logits = 1.5 * (2.0 * labels - 1.0)
  assert float(lovasz_hinge(logits, labels)) == 0.0


@pytest.mark.parametrize('label_rate,valid_rate', [
    (0.3, 1.0),  # Random labels, everything valid.
    (0.3, 0.7),  # Random labels with void pixels.
    (0.0, 0.8),  # All-negative images.
    (1.0, 0.8),  # All-positive images.
])
def test_lovasz_matches_numpy_reference(label_rate, valid_rate):
  logits, labels, valid = _random_case(0, label_rate=label_rate,
                                       valid_rate=valid_rate)
  expected = _reference_lovasz(logits, labels, valid)
  np.testing.assert_allclose(
      lovasz_hinge(logits, labels, valid), expected, rtol=1e-5)
  # per_image=False treats the batch as one image.
  flat = _reference_lovasz_image(logits.ravel(), labels.ravel(), valid.ravel())
  np.testing.assert_allclose(
      lovasz_hinge(logits, labels, valid, per_image=False), flat,
      rtol=1e-5)


def test_lovasz_void_pixels_equal_dropping_them():
  logits, labels, valid = _random_case(1, shape=(1, 10, 10), valid_rate=0.6)
  # The valid pixels alone, as a one-row image, must give the same loss and
  # the same gradient on those pixels; void pixels get zero gradient.
  kept = lambda x: x[valid][None, None, :]
  np.testing.assert_allclose(
      lovasz_hinge(logits, labels, valid),
      lovasz_hinge(kept(logits), kept(labels)), rtol=1e-6)
  grads = jax.grad(lovasz_hinge)(logits, labels, valid)
  kept_grads = jax.grad(lovasz_hinge)(kept(logits), kept(labels))
  np.testing.assert_allclose(grads[valid], kept_grads.ravel(), atol=1e-7)
  np.testing.assert_array_equal(grads[~valid], 0.0)


@pytest.mark.parametrize('name', LOSS_NAMES)
def test_void_logits_never_matter_even_nan(name):
  loss = _jitted(name)
  logits, labels, valid = _random_case(9, valid_rate=0.7)
  poisoned = np.where(valid, logits, np.nan).astype(np.float32)
  np.testing.assert_allclose(loss(poisoned, labels, valid),
                             loss(logits, labels, valid), rtol=1e-6)
  grads = jax.grad(loss)(poisoned, labels, valid)
  np.testing.assert_allclose(grads, jax.grad(loss)(logits, labels, valid),
                             atol=1e-7)
  np.testing.assert_array_equal(np.asarray(grads)[~valid], 0.0)


@pytest.mark.parametrize('name', LOSS_NAMES)
def test_channel_axis_is_optional(name):
  loss = _jitted(name)
  logits, labels, valid = _random_case(2)
  expected = loss(logits, labels, valid)
  np.testing.assert_allclose(
      loss(logits[..., None], labels, valid[..., None]), expected, rtol=1e-6)
  np.testing.assert_allclose(
      loss(logits[..., None], labels[..., None]), loss(logits, labels),
      rtol=1e-6)


@pytest.mark.parametrize('name', LOSS_NAMES)
def test_batch_mean_and_vmap_equal_per_image_loop(name):
  loss = _jitted(name)
  logits, labels, valid = _random_case(3, shape=(4, 6, 7))
  per_image = [float(loss(l, y, v)) for l, y, v in zip(logits, labels, valid)]
  np.testing.assert_allclose(jax.vmap(loss)(logits, labels, valid), per_image,
                             rtol=1e-6)
  np.testing.assert_allclose(loss(logits, labels, valid), np.mean(per_image),
                             rtol=1e-6)
  # Two leading batch axes (e.g. tasks x copies) average the same way.
  np.testing.assert_allclose(
      loss(logits.reshape(2, 2, 6, 7), labels.reshape(2, 2, 6, 7),
           valid.reshape(2, 2, 6, 7)), np.mean(per_image), rtol=1e-6)


@pytest.mark.parametrize('name', LOSS_NAMES)
def test_gradient_matches_finite_differences(name):
  loss = _jitted(name)
  with _float64():
    logits, labels, valid = _random_case(4, shape=(2, 3, 4))
    logits = jnp.asarray(logits, jnp.float64)
    value = jax.jit(lambda x: loss(x, labels, valid))
    grads = np.asarray(jax.grad(lambda x: loss(x, labels, valid))(logits))
    eps = 1e-6
    numeric = np.zeros(logits.shape)
    for index in np.ndindex(logits.shape):
      step = np.zeros(logits.shape)
      step[index] = eps
      numeric[index] = (value(logits + step) - value(logits - step)) / (2 * eps)
  np.testing.assert_allclose(grads, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize('name', ['bce', 'balanced_bce'])
def test_hessian_vector_product_matches_finite_differences(name):
  # Second-order meta-gradients differentiate the loss gradient again.
  loss = _jitted(name)
  with _float64():
    logits, labels, valid = _random_case(5, shape=(2, 3, 4))
    logits = jnp.asarray(logits, jnp.float64)
    direction = jnp.asarray(np.random.default_rng(6).standard_normal(
        logits.shape))
    grad_fn = jax.grad(lambda x: loss(x, labels, valid))
    hvp = jax.jvp(grad_fn, (logits,), (direction,))[1]
    eps = 1e-5
    numeric = (grad_fn(logits + eps * direction)
               - grad_fn(logits - eps * direction)) / (2 * eps)
  np.testing.assert_allclose(hvp, numeric, rtol=1e-5, atol=1e-9)


def test_lovasz_is_twice_differentiable_with_zero_curvature():
  # Piecewise linear in the logits: the Hessian exists and is 0 off ties.
  logits, labels, valid = _random_case(7, shape=(1, 3, 3))
  hessian = jax.hessian(lovasz_hinge)(logits, labels, valid)
  np.testing.assert_array_equal(hessian, 0.0)


def test_bce_hand_value_and_stability():
  logits = jnp.array([[1.0, -2.0], [0.0, 100.0]])
  labels = jnp.array([[1, 0], [1, 0]])
  # -log sigmoid(1), -log(1 - sigmoid(-2)), -log sigmoid(0), -log(1 - s(100)).
  terms = [math.log1p(math.exp(-1.0)), math.log1p(math.exp(-2.0)),
           math.log(2.0), 100.0 + math.log1p(math.exp(-100.0))]
  np.testing.assert_allclose(
      binary_cross_entropy(logits, labels), np.mean(terms), rtol=1e-6)
  valid = jnp.array([[True, True], [True, False]])
  np.testing.assert_allclose(
      binary_cross_entropy(logits, labels, valid), np.mean(terms[:3]),
      rtol=1e-6)
  huge = jnp.array([[1e4, -1e4]])
  grads = jax.grad(binary_cross_entropy)(huge, jnp.array([[1, 0]]))
  assert np.all(np.isfinite(grads))


def test_balanced_bce_hand_value():
  logits = jnp.array([[1.0, -1.0], [2.0, 0.0]])
  labels = jnp.array([[1, 0], [0, 0]])
  # |Y+| = 1, |Y-| = 3, |Y| = 4: the positive sum is weighted by 3/4, the
  # negative sum by 1/4.
  pos = math.log1p(math.exp(-1.0))  # -log sigmoid(1)
  neg = (math.log1p(math.exp(-1.0))  # -log(1 - sigmoid(-1))
         + math.log1p(math.exp(2.0))  # -log(1 - sigmoid(2))
         + math.log(2.0))  # -log(1 - sigmoid(0))
  expected = 3 / 4 * pos + 1 / 4 * neg
  np.testing.assert_allclose(
      class_balanced_cross_entropy(logits, labels), expected,
      rtol=1e-6)
  np.testing.assert_allclose(
      class_balanced_cross_entropy(logits, labels, normalize=True),
      expected / 4, rtol=1e-6)
  # Voiding the logit-2 negative: |Y+| = 1, |Y-| = 2, |Y| = 3.
  valid = jnp.array([[True, True], [False, True]])
  expected_valid = (2 / 3 * pos
                    + 1 / 3 * (math.log1p(math.exp(-1.0)) + math.log(2.0)))
  np.testing.assert_allclose(
      class_balanced_cross_entropy(logits, labels, valid),
      expected_valid, rtol=1e-6)


@pytest.mark.parametrize('name', LOSS_NAMES)
def test_loss_decreases_in_a_jitted_scan_sgd_loop(name):
  # The inner loop's use: vmap over images, value_and_grad, lax.scan, jit.
  loss_fn = losses.get_loss(name)
  logits0, labels, valid = _random_case(8, shape=(2, 6, 6))
  # The mean losses spread their gradient over 72 pixels; the balanced loss
  # is a sum over pixels.
  lr = {'lovasz_hinge': 20.0, 'bce': 30.0, 'balanced_bce': 1.0}[name]

  @jax.jit
  def run(logits):
    def step(x, _):
      value, grad = jax.value_and_grad(
          lambda x: jax.vmap(loss_fn)(x, labels, valid).mean())(x)
      return x - lr * grad, value
    return jax.lax.scan(step, logits, None, length=20)[1]

  values = np.asarray(run(logits0))
  assert np.all(np.isfinite(values))
  assert values[-1] < 0.5 * values[0]


@pytest.mark.parametrize('name', LOSS_NAMES)
def test_bfloat16_logits_are_computed_in_float32(name):
  # 300 pixels: more than bfloat16 can count one by one.
  logits, labels, valid = _random_case(10, shape=(1, 15, 20))
  low = jnp.asarray(logits, jnp.bfloat16)
  value = _jitted(name)(low, labels, valid)
  assert value.dtype == jnp.float32
  np.testing.assert_allclose(
      value, _jitted(name)(low.astype(jnp.float32), labels, valid), rtol=1e-6)


def test_get_loss_registry():
  assert losses.get_loss() is losses.lovasz_hinge
  assert losses.get_loss('bce') is losses.binary_cross_entropy
  assert losses.get_loss('balanced_bce') is (
      losses.class_balanced_cross_entropy)
  with pytest.raises(ValueError, match="balanced_bce.*bce.*lovasz_hinge"):
    losses.get_loss('dice')


def test_shape_mismatch_raises():
  with pytest.raises(ValueError, match='same'):
    losses.lovasz_hinge(jnp.zeros((4, 5)), jnp.zeros((5, 4)))


@pytest.mark.parametrize('p, pi', [(0.2, 0.05), (0.5, 0.2), (0.9, 0.6)])
def test_unbalance_probs_recovers_the_plain_probability(p, pi):
  """A region of pixels, a fraction p of them foreground, shares one logit;
  the rest of the image makes the foreground share pi. The logit that
  minimises the class-balanced loss, mapped back by unbalance_probs, is p."""
  n = 1000
  region = 200
  pos_in_region = int(round(p * region))
  pos_total = int(round(pi * n))
  assert pos_total >= pos_in_region
  labels = np.zeros(n, np.float32)
  labels[:pos_in_region] = 1.0
  labels[region:region + pos_total - pos_in_region] = 1.0
  # Outside the region the logits are fixed and confident (and right).
  fixed = np.where(labels > 0, 20.0, -20.0).astype(np.float32)
  in_region = np.arange(n) < region

  def loss(z):
    logits = jnp.where(in_region, z, fixed)
    return losses.class_balanced_cross_entropy(logits[None], labels[None],
                                               normalize=True)

  z = jnp.zeros(())
  grad = jax.jit(jax.grad(loss))
  for _ in range(3000):
    z = z - 20.0 * grad(z)
  q = jax.nn.sigmoid(z)
  assert abs(float(q) - p) > 0.02  # the balanced optimum is not p ...
  got = losses.unbalance_probs(np.asarray([q]), np.asarray([pi]))
  np.testing.assert_allclose(got, [p], atol=2e-3)  # ... mapped back, it is
