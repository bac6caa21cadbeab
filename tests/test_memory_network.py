"""Memory network: soft aggregation against NumPy, shapes, object handling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _toy_memory import tiny_stcn
from metavos.memory import network


pytestmark = pytest.mark.usefixtures("fast_compile")


def _np_aggregate(logits):
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  new = np.concatenate([np.prod(1 - p, 0, keepdims=True), p])
  new = np.clip(new, 1e-7, 1 - 1e-7)
  odds = np.log(new / (1 - new))
  e = np.exp(odds - odds.max(0, keepdims=True))
  return e / e.sum(0, keepdims=True)


def test_soft_aggregation_matches_numpy_and_sums_to_one():
  logits = np.random.default_rng(0).normal(0, 3, (3, 4, 5)).astype(np.float32)
  probs = jax.nn.softmax(network.aggregate(jnp.asarray(logits)), axis=0)
  np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-6)
  np.testing.assert_allclose(probs, _np_aggregate(logits), rtol=1e-4,
                             atol=1e-6)


def test_absent_objects_get_zero_probability_and_change_nothing_else():
  logits = np.random.default_rng(1).normal(0, 3, (3, 4, 5)).astype(np.float32)
  present = jnp.array([True, False, True])
  probs = jax.nn.softmax(network.aggregate(jnp.asarray(logits), present), 0)
  assert float(jnp.abs(probs[2]).max()) == 0.0  # class 2 = object 1
  np.testing.assert_allclose(probs[jnp.array([0, 1, 3])],
                             _np_aggregate(logits[[0, 2]]), rtol=1e-4,
                             atol=1e-6)


def test_shapes_and_per_object_values_do_not_mix_objects():
  fns, params = tiny_stcn()
  rng = np.random.default_rng(2)
  frame = jnp.asarray(rng.random((40, 56, 3)), jnp.float32)
  masks = jnp.asarray(rng.random((3, 40, 56)), jnp.float32)
  perm = jnp.array([2, 0, 1])

  @jax.jit
  def run(params):
    feats = network.frame_features(fns.encode_key(params, frame[None]), 0)
    v = fns.encode_value(params, frame, feats.f16, masks)
    v_perm = fns.encode_value(params, frame, feats.f16, masks[perm])
    mem = fns.new_memory(params, frame, feats, masks, capacity=2)
    return feats.key, v, v_perm, fns.segment(params, mem, frame)

  key, v, v_perm, probs = run(params)
  assert key.shape == (3, 4, 8)  # ceil(40/16), ceil(56/16), key_dim
  assert v.shape == (3, 3, 4, 8)
  # Objects are a batch: permuting them permutes the values (each object
  # sees its own mask and the sum of the others).
  np.testing.assert_allclose(v_perm, v[perm], rtol=1e-4, atol=1e-5)
  assert probs.shape == (4, 40, 56)
  np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-5)


@pytest.mark.parametrize("backbone,frozen,groups", [
    ("tiny", 2, {"conv1", "norm1", "layer1", "layer2"}),
    ("vgg16", 3, {"block1", "block2", "block3"}),
])
def test_frozen_key_stages_get_no_gradient_and_no_update(
    backbone, frozen, groups, fast_compile):
  del fast_compile
  from configs import stcn  # pylint: disable=g-import-not-at-top
  from metavos.methods import memory_networks  # pylint: disable=g-import-not-at-top
  config = stcn.get_config("smoke")
  config.memory.key_backbone = backbone
  config.memory.frozen_key_stages = frozen
  fns, params = network.build(config.memory, nnx.Rngs(0))
  mask = network.frozen_mask(params, config.memory)
  flat = jax.tree_util.tree_flatten_with_path(mask)[0]
  named = {jax.tree_util.keystr(path) for path, m in flat if m}
  # Exactly the key encoder's first stages (VGG16 under its `trunk`).
  assert {p.split("'")[3 if backbone == "tiny" else 5] for p in named} == groups
  assert all(p.startswith("['key_encoder']") for p in named)
  frames = jnp.asarray(np.random.default_rng(0).random((2, 32, 48, 3)),
                       jnp.float32)

  def loss(p):
    f = fns.encode_key(p, frames)
    return sum(jnp.sum(x**2) for x in (f.key, f.f16, f.f8, f.f4))

  grads = jax.jit(jax.grad(loss))(params)
  masks = jax.tree.leaves(mask)
  assert all(not np.any(g) for g, m in zip(jax.tree.leaves(grads), masks)
             if m)
  # The stage after the frozen ones still learns.
  assert any(np.any(g) for g, (path, m) in zip(jax.tree.leaves(grads), flat)
             if not m and "key_encoder" in jax.tree_util.keystr(path))
  tx = memory_networks.make_optimizer(config)
  updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params),
                                  tx.init(params), params)
  for u, m in zip(jax.tree.leaves(updates), masks):
    assert np.any(u) != m  # frozen: exactly zero (no weight decay); else moves


def test_unfrozen_key_encoder_is_unchanged_and_bad_counts_fail():
  from configs import stcn  # pylint: disable=g-import-not-at-top
  config = stcn.get_config("smoke").memory
  fns, params = network.build(config, nnx.Rngs(0))
  frames = jnp.asarray(np.random.default_rng(1).random((1, 32, 48, 3)),
                       jnp.float32)
  config.frozen_key_stages = 3
  frozen_fns, _ = network.build(config, nnx.Rngs(0))
  # Freezing changes gradients, never values.
  for a, b in zip(fns.encode_key(params, frames),
                  frozen_fns.encode_key(params, frames)):
    if a is not None:
      np.testing.assert_array_equal(a, b)
  config.frozen_key_stages = 4
  with pytest.raises(ValueError, match="frozen_key_stages=4.*0..3"):
    network.build(config, nnx.Rngs(0))
