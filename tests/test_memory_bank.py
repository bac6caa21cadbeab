"""Memory bank: the STCN read against NumPy, top-k, slots and eviction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.memory import bank


def _np_readout(keys, values, valid, query, top_k=None):
  """Straightforward reference: softmax over -|k_m - k_q|^2 / sqrt(C)."""
  n, h, w, c = keys.shape
  mk = keys[valid].reshape(-1, c)
  mv = values[:, valid].reshape(values.shape[0], -1, values.shape[-1])
  q = query.reshape(-1, c)
  d2 = ((q[:, None, :] - mk[None, :, :]) ** 2).sum(-1)  # (Q, M)
  a = -d2 / np.sqrt(c)
  if top_k is not None:
    kth = np.sort(a, axis=1)[:, -top_k][:, None]
    a = np.where(a >= kth, a, -np.inf)
  wts = np.exp(a - a.max(1, keepdims=True))
  wts /= wts.sum(1, keepdims=True)
  return np.einsum("qm,kmc->kqc", wts, mv).reshape(values.shape[0], h, w, -1)


def _bank(rng, n=4, k=2, h=3, w=5, ck=6, cv=7, valid=(1, 1, 0, 1)):
  keys = rng.normal(size=(n, h, w, ck)).astype(np.float32)
  values = rng.normal(size=(k, n, h, w, cv)).astype(np.float32)
  valid = np.asarray(valid, bool)
  mem = bank.Memory(jnp.asarray(keys), jnp.asarray(values),
                    jnp.asarray(valid), jnp.zeros((), jnp.int32))
  query = rng.normal(size=(h, w, ck)).astype(np.float32)
  return mem, keys, values, valid, query


def test_readout_matches_numpy_softmax_over_l2():
  mem, keys, values, valid, query = _bank(np.random.default_rng(0))
  got = bank.readout(mem, jnp.asarray(query))
  np.testing.assert_allclose(got, _np_readout(keys, values, valid, query),
                             rtol=1e-5, atol=1e-5)


def test_top_k_matches_reference_and_k_all_is_full_softmax():
  mem, keys, values, valid, query = _bank(np.random.default_rng(1))
  m = keys.shape[0] * keys.shape[1] * keys.shape[2]
  full = bank.readout(mem, jnp.asarray(query))
  for k in (m, m + 5):  # k = every position (valid or not), or more
    np.testing.assert_allclose(bank.readout(mem, jnp.asarray(query), k),
                               full, rtol=1e-5, atol=1e-6)
  got = bank.readout(mem, jnp.asarray(query), top_k=4)
  np.testing.assert_allclose(got, _np_readout(keys, values, valid, query, 4),
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(got, full, atol=1e-3)  # k=4 really drops positions


def test_invalid_slots_are_ignored_whatever_they_hold():
  mem, *_, query = _bank(np.random.default_rng(2))
  poisoned = mem.replace(keys=mem.keys.at[2].set(0.0),
                         values=mem.values.at[:, 2].set(1e6))
  np.testing.assert_allclose(bank.readout(poisoned, jnp.asarray(query)),
                             bank.readout(mem, jnp.asarray(query)),
                             rtol=1e-6)


def test_slot_zero_is_kept_and_the_oldest_frame_is_evicted():
  mem = bank.empty(3, (1, 1, 1), (1, 1, 1, 1))
  add = jax.jit(bank.add)
  for i in range(6):  # frame i has key = value = i
    x = jnp.full((1, 1, 1), float(i))
    mem = add(mem, x, x[None], i == 0)
  # Slot 0: frame 0 for good; the 2-slot ring holds the newest two (4, 5).
  keys = mem.keys[:, 0, 0, 0].tolist()
  assert keys[0] == 0.0 and sorted(keys[1:]) == [4.0, 5.0]
  assert mem.values[0, :, 0, 0, 0].tolist() == keys
  assert mem.valid.tolist() == [True, True, True]


def test_permanent_slots_fill_in_order_and_ring_skips_them():
  mem = bank.empty(4, (1, 1, 1), (1, 1, 1, 1), num_permanent=2)
  for i, perm in enumerate([True, False, True, False, False]):
    x = jnp.full((1, 1, 1), float(i))
    mem = bank.add(mem, x, x[None], perm)
  assert mem.keys[:, 0, 0, 0].tolist() == [0.0, 2.0, 4.0, 3.0]


def test_bad_capacity_says_what_to_change():
  with pytest.raises(ValueError, match="max_memory"):
    bank.empty(2, (1, 1, 1), (1, 1, 1, 1), num_permanent=3)
