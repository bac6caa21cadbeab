"""The XMem-style network (metavos.memory.xmem): its similarity, the
long-term memory's consolidation against NumPy references, bounded memory
on long videos, the sensory memory. Training it through every memory-network
method: test_memory_methods_xmem.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import stcn as stcn_config
from metavos.memory import bank, network, xmem
from metavos.methods import memory_networks

pytestmark = pytest.mark.usefixtures("fast_compile")


def _np_similarity(keys, shrink, query, sel):
  """-s_m * sum_c e_qc (k_mc - q_qc)^2 / sqrt(C), one pair at a time."""
  out = np.zeros((len(query), len(keys)))
  for q in range(len(query)):
    for m in range(len(keys)):
      out[q, m] = -shrink[m] * np.sum(
          sel[q] * (keys[m] - query[q]) ** 2) / math.sqrt(keys.shape[1])
  return out


def test_similarity_matches_reference_and_reduces_to_stcn():
  rng = np.random.default_rng(0)
  keys, query = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
  shrink, sel = 1 + rng.random(7) ** 2, rng.random((4, 5))
  got = xmem.similarity(jnp.asarray(keys), jnp.asarray(shrink),
                        jnp.asarray(query), jnp.asarray(sel))
  np.testing.assert_allclose(got, _np_similarity(keys, shrink, query, sel),
                             rtol=1e-5, atol=1e-5)
  # Shrinkage 1 and no selection: STCN's L2 read (the query's own term is
  # constant per row and cancels in the softmax).
  plain = xmem.similarity(jnp.asarray(keys), jnp.ones(7), jnp.asarray(query))
  np.testing.assert_allclose(
      jax.nn.softmax(plain, -1),
      jax.nn.softmax(bank.affinity(jnp.asarray(keys), jnp.asarray(query)), -1),
      rtol=1e-5, atol=1e-6)


def _memory(rng, capacity=3, hw=(2, 3), k=2, ck=4, cv=3, lt=8,
            num_permanent=1):
  """An XMemMemory with random keys/values and every working slot full."""
  n, (h, w) = capacity, hw
  f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  work = bank.Memory(f(n, h, w, ck), f(k, n, h, w, cv), jnp.ones(n, bool),
                     jnp.asarray(n - num_permanent, jnp.int32), num_permanent)
  return xmem.XMemMemory(
      working=work,
      shrinkage=jnp.asarray(1 + rng.random((n, h, w)), jnp.float32),
      usage=jnp.asarray(rng.random((n, h, w)) * 5, jnp.float32),
      life=jnp.asarray(rng.integers(1, 4, (n, h, w)), jnp.float32),
      long_term=xmem.LongTermMemory(
          keys=f(lt, ck), shrinkage=jnp.ones(lt), values=f(k, lt, cv),
          valid=jnp.asarray(np.arange(lt) < lt - 2),
          usage=jnp.asarray(rng.random(lt), jnp.float32),
          life=jnp.ones(lt)),
      hidden=f(k, h, w, 5))


def test_consolidation_keeps_most_used_positions_in_least_used_slots():
  rng = np.random.default_rng(1)
  mem = _memory(rng)
  slot, g = 1, 4
  out = xmem.consolidate(mem, jnp.asarray(slot), g)
  # NumPy reference.
  keys = np.asarray(mem.working.keys[slot]).reshape(6, 4)
  shrink = np.asarray(mem.shrinkage[slot]).reshape(6)
  values = np.asarray(mem.working.values[:, slot]).reshape(2, 6, 3)
  ratio = (np.asarray(mem.usage[slot]) / np.asarray(mem.life[slot])).ravel()
  pick = np.argsort(-ratio)[:g]
  sim = _np_similarity(keys, shrink, keys[pick], np.ones((g, 4)))
  wts = np.exp(sim - sim.max(1, keepdims=True))
  wts /= wts.sum(1, keepdims=True)
  lt = mem.long_term
  lt_ratio = np.where(lt.valid, np.asarray(lt.usage), -np.inf)
  replaced = np.argsort(lt_ratio, kind="stable")[:g]
  # The two empty slots go first, then the two least used valid ones.
  assert set(replaced[:2]) == {6, 7}
  got = out.long_term
  for proto, slot_lt in zip(pick, replaced):
    np.testing.assert_allclose(got.keys[slot_lt], keys[proto], rtol=1e-6)
    np.testing.assert_allclose(got.usage[slot_lt], ratio[proto], rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got.values)[:, replaced],
                             np.einsum("gp,kpc->kgc", wts, values),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got.shrinkage)[replaced],
                             wts @ shrink, rtol=1e-5)
  assert bool(jnp.all(got.valid))
  untouched = np.setdiff1d(np.arange(8), replaced)
  np.testing.assert_array_equal(np.asarray(got.keys)[untouched],
                                np.asarray(lt.keys)[untouched])
  # The working memory is left to `write`.
  np.testing.assert_array_equal(out.working.keys, mem.working.keys)


def test_evicted_frame_is_still_read_from_long_term_memory():
  # Orthogonal keys, large enough that every read is nearly one-hot: a
  # frame consolidated whole (all positions prototypes) reads back as
  # itself after the ring buffer dropped it.
  h, w, ck, p = 1, 3, 12, 3
  eye = 6.0 * np.eye(ck, dtype=np.float32)
  keys = [eye[i * p:(i + 1) * p].reshape(h, w, ck) for i in range(4)]
  vals = [np.full((1, h, w, 2), i + 1.0, np.float32) for i in range(4)]
  mem = xmem.XMemMemory(
      working=bank.empty(2, (h, w, ck), (1, h, w, 2)),
      shrinkage=jnp.zeros((2, h, w)), usage=jnp.zeros((2, h, w)),
      life=jnp.zeros((2, h, w)),
      long_term=xmem.LongTermMemory(
          jnp.zeros((6, ck)), jnp.zeros(6), jnp.zeros((1, 6, 2)),
          jnp.zeros(6, bool), jnp.zeros(6), jnp.zeros(6)),
      hidden=jnp.zeros((1, h, w, 1)))
  one = jnp.ones((h, w))
  write = jax.jit(xmem.write, static_argnums=5)
  mem = write(mem, keys[0], one, vals[0], True, p)   # permanent
  mem = write(mem, keys[1], one, vals[1], False, p)  # ring
  assert not bool(jnp.any(mem.long_term.valid))
  mem = write(mem, keys[2], one, vals[2], False, p)  # evicts frame 1
  assert int(jnp.sum(mem.long_term.valid)) == p
  readout, after = xmem.read(mem, jnp.asarray(keys[1]), None)
  np.testing.assert_allclose(readout, vals[1], atol=1e-3)
  # Every query's attention sums to 1: the usage added is one per query.
  added = (jnp.sum(after.usage * mem.working.valid[:, None, None])
           + jnp.sum(after.long_term.usage) - jnp.sum(mem.long_term.usage))
  np.testing.assert_allclose(added, h * w, rtol=1e-5)
  # A permanent write evicts nothing.
  kept = write(mem, keys[3], one, vals[3], True, p)
  np.testing.assert_array_equal(kept.long_term.valid, mem.long_term.valid)


def _net():
  config = stcn_config.get_config("smoke,network=xmem")
  return memory_networks.build_network(config)


def test_long_video_memory_is_bounded_and_long_term_fills():
  fns, params = _net()
  assert isinstance(fns, xmem.XMemFns)
  rng = np.random.default_rng(0)
  frames = rng.random((10, 32, 48, 3)).astype(np.float32)
  feats = jax.jit(fns.encode_key)(params, jnp.asarray(frames))
  one = lambda t: network.frame_features(feats, t)
  masks = jnp.asarray(rng.random((1, 32, 48)) > 0.5, jnp.float32)
  mem = fns.new_memory(params, jnp.asarray(frames[0]), one(0), masks, 3)
  shapes = jax.tree.map(jnp.shape, mem)
  memorize = jax.jit(fns.memorize, static_argnums=())
  predict = jax.jit(fns.predict, static_argnums=(3, 5))
  filled = []
  for t in range(1, 10):
    logits, mem = predict(params, mem, one(t), (32, 48), None, 8)
    assert logits.shape == (2, 32, 48)
    mem = memorize(params, mem, jnp.asarray(frames[t]), one(t), masks)
    assert jax.tree.map(jnp.shape, mem) == shapes  # static, bounded
    filled.append(int(jnp.sum(mem.long_term.valid)))
  g, size = fns._budget(one(0).key)  # 2x3 positions at stride 16: g = 6
  # Two ring slots: frames 1 and 2 fill them, every later write evicts one
  # frame of g prototypes, until the budget is full.
  assert filled == [min(max(t - 2, 0) * g, size) for t in range(1, 10)]
  assert filled[-1] == size


def test_sensory_memory_changes_and_is_read():
  fns, params = _net()
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.random((2, 32, 48, 3)), jnp.float32)
  feats = fns.encode_key(params, frames)
  masks = jnp.asarray(rng.random((1, 32, 48)) > 0.5, jnp.float32)
  mem = fns.new_memory(params, frames[0], network.frame_features(feats, 0),
                       masks, 2)
  q = network.frame_features(feats, 1)
  logits, after = fns.predict(params, mem, q, (32, 48))
  assert float(jnp.max(jnp.abs(after.hidden - mem.hidden))) > 1e-4
  # The hidden state is an input of the decoder: another one, other logits.
  other, _ = fns.predict(params, mem.replace(hidden=mem.hidden + 1.0), q,
                         (32, 48))
  assert float(jnp.max(jnp.abs(other - logits))) > 1e-4
