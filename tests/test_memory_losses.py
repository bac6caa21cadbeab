"""Bootstrapped cross-entropy against NumPy; its annealing schedule."""

import jax
import jax.numpy as jnp
import numpy as np

from metavos.memory import losses


def _np_ce(logits, masks):
  cls = np.where(masks.sum(1) > 0, masks.argmax(1) + 1, 0)  # (B, H, W)
  z = logits - logits.max(1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(1, keepdims=True))
  return -np.take_along_axis(logp, cls[:, None], 1)[:, 0]


def test_bootstrapped_ce_is_mean_of_hardest_valid_pixels():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 2, (2, 3, 6, 7)).astype(np.float32)
  masks = np.zeros((2, 2, 6, 7), np.float32)
  masks[:, 0, :3], masks[:, 1, 4:] = 1, 1
  valid = rng.random((2, 6, 7)) > 0.3
  ce = _np_ce(logits, masks)
  for p in (1.0, 0.25):
    want = []
    for b in range(2):
      v = np.sort(ce[b][valid[b]])[::-1]
      want.append(v[:max(int(np.floor(p * v.size)), 1)].mean())
    got = losses.bootstrapped_ce(jnp.asarray(logits), jnp.asarray(masks),
                                 jnp.asarray(valid), p)
    np.testing.assert_allclose(got, np.mean(want), rtol=1e-5)


def test_void_pixels_and_frames_without_labels_are_ignored():
  rng = np.random.default_rng(1)
  logits = rng.normal(0, 2, (2, 2, 4, 4)).astype(np.float32)
  masks = (rng.random((2, 1, 4, 4)) > 0.5).astype(np.float32)
  valid = np.ones((2, 4, 4), bool)
  valid[0, :2] = False
  valid[1] = False  # an unlabelled frame: no pixel counts
  base = losses.bootstrapped_ce(jnp.asarray(logits), jnp.asarray(masks),
                                jnp.asarray(valid))
  np.testing.assert_allclose(base, _np_ce(logits, masks)[0][valid[0]].mean(),
                             rtol=1e-5)
  noisy = logits.copy()
  noisy[0, :, :2] = 1e3  # void logits may hold anything
  noisy[1] = -1e3
  np.testing.assert_allclose(losses.bootstrapped_ce(
      jnp.asarray(noisy), jnp.asarray(masks), jnp.asarray(valid)), base,
                             rtol=1e-6)


def test_fraction_anneals_linearly_between_the_two_steps():
  p = jax.vmap(lambda s: losses.bootstrap_fraction(s, 10, 20, 0.15))(
      jnp.array([0, 10, 15, 20, 99]))
  np.testing.assert_allclose(p, [1.0, 1.0, 0.575, 0.15, 0.15], rtol=1e-6)
