"""The training chain: gradients through every step, unroll/remat parity,
given memory masks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _toy_memory import tiny_stcn
from metavos.memory import chain, losses


pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def setup(fast_compile):
  del fast_compile
  fns, params = tiny_stcn()
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.random((4, 32, 32, 3)), jnp.float32)
  labels = np.zeros((4, 2, 32, 32), np.float32)
  for t in range(4):  # two squares drifting right
    labels[t, 0, 4:14, 2 + 2 * t:12 + 2 * t] = 1
    labels[t, 1, 18:28, 20 - 2 * t:30 - 2 * t] = 1
  return fns, params, frames, jnp.asarray(labels)


def _loss(params, fns, frames, labels, **kw):
  out = chain.run_chain(fns, params, frames[0], labels[0], frames[1:], **kw)
  return losses.bootstrapped_ce(out.logits, labels[1:],
                                jnp.ones(labels[1:, 0].shape, bool))


def test_gradient_reaches_early_layers_and_unroll_remat_agree(setup):
  fns, params, frames, labels = setup
  grad = lambda **kw: jax.jit(jax.value_and_grad(functools.partial(
      _loss, fns=fns, frames=frames, labels=labels, **kw)))(params)
  loss, g = grad(unroll=True)
  assert np.isfinite(float(loss))
  for early in (g["key_encoder"]["conv1"]["kernel"],
                g["value_encoder"]["conv1"]["kernel"],
                g["mask_stem"]["kernel"]):
    assert np.all(np.isfinite(early)) and float(jnp.abs(early).max()) > 0
  # Rolled loop (with the step rematerialised): the same loss and gradients.
  loss2, g2 = grad(unroll=1, remat=True)
  np.testing.assert_allclose(loss2, loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g2), jax.tree.leaves(g)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_memory_masks_change_only_what_later_frames_read(setup):
  fns, params, frames, labels = setup
  run = jax.jit(lambda mm, given: chain.run_chain(
      fns, params, frames[0], labels[0], frames[1:], memory_masks=mm,
      memory_mask_given=given).logits)
  own = jax.jit(lambda: chain.run_chain(fns, params, frames[0], labels[0],
                                        frames[1:]))()
  # Storing each frame with its own prediction is the default.
  same = run(own.probs[:, 1:], jnp.ones((3,), bool))
  np.testing.assert_allclose(same, own.logits, rtol=1e-4, atol=1e-4)
  # Storing frame 1 with other masks changes frames 2.. but not frame 1.
  other = run(jnp.zeros_like(own.probs[:, 1:]), jnp.array([True, False,
                                                           False]))
  np.testing.assert_allclose(other[0], own.logits[0], rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(other[1] - own.logits[1]).max()) > 1e-3
  np.testing.assert_allclose(jax.nn.softmax(other, axis=1).sum(1), 1.0,
                             rtol=1e-5)
