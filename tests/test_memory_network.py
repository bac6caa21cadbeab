"""Memory network: soft aggregation against NumPy, shapes, object handling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

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


def _fns():
  net = network.MemoryNetwork("tiny", "tiny", key_dim=8, value_dim=8,
                              decoder_dim=8, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(net, nnx.Param)
  return network.make_fns(graphdef), params


def test_shapes_and_per_object_values_do_not_mix_objects():
  fns, params = _fns()
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
