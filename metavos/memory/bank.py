"""A fixed-capacity memory of encoded frames, and the attention read from it.

Static shapes, so the same compiled step serves the 3rd and the 300th frame:

  keys    (N, h, w, Ck)      one key map per memory slot
  values  (K, N, h, w, Cv)   one value map per object and slot
  valid   (N,)               whether a slot holds a frame

Slots [0, num_permanent) hold labelled frames for good (slot 0: the frame
propagation starts from); the other slots are a ring buffer that evicts the
oldest frame, so a long video needs bounded memory.

The read is STCN's (Cheng et al., 2021): affinity = negative squared L2
distance between memory and query keys over sqrt(Ck), softmax over every
memory position (optionally only the top k), then a weighted sum of values.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Memory:
  """Memory bank (a pytree; `num_permanent` is static).

  Attributes:
    keys: (N, h, w, Ck) memory keys.
    values: (K, N, h, w, Cv) memory values, per object.
    valid: (N,) bool, whether each slot holds a frame.
    ring_count: int32 scalar, frames added to the ring buffer so far.
    num_permanent: slots that are never evicted (static).
  """
  keys: jax.Array
  values: jax.Array
  valid: jax.Array
  ring_count: jax.Array
  num_permanent: int = struct.field(pytree_node=False, default=1)

  @property
  def capacity(self) -> int:
    return int(self.keys.shape[0])


def empty(capacity: int, key_shape: tuple[int, ...],
          value_shape: tuple[int, ...], num_permanent: int = 1,
          dtype=jnp.float32) -> Memory:
  """An empty bank.

  Args:
    capacity: N, slots in all (permanent and ring).
    key_shape: (h, w, Ck) of one frame's key.
    value_shape: (K, h, w, Cv) of one frame's values.
    num_permanent: slots never evicted, 1 <= num_permanent <= capacity.
    dtype: dtype of keys and values.
  """
  if not 1 <= num_permanent <= capacity:
    raise ValueError(f"Memory: need 1 <= num_permanent ({num_permanent}) <= "
                     f"capacity ({capacity}); raise memory.max_memory.")
  k = value_shape[0]
  return Memory(
      keys=jnp.zeros((capacity,) + tuple(key_shape), dtype),
      values=jnp.zeros((k, capacity) + tuple(value_shape[1:]), dtype),
      valid=jnp.zeros((capacity,), bool),
      ring_count=jnp.zeros((), jnp.int32), num_permanent=num_permanent)


def next_slot(memory: Memory, permanent: bool | jax.Array = False
              ) -> tuple[jax.Array, jax.Array]:
  """Where `add` writes the next frame: (slot, write), both traced.

  `permanent`: the next free permanent slot (the last one once all are
  taken); otherwise the ring buffer's oldest slot. `write` is False only
  for a non-permanent add to a bank without ring slots.
  """
  p, n = memory.num_permanent, memory.capacity
  perm_slot = jnp.minimum(jnp.sum(memory.valid[:p]), p - 1)
  ring_slot = p + memory.ring_count % max(n - p, 1)
  permanent = jnp.asarray(permanent)
  return (jnp.where(permanent, perm_slot, ring_slot),
          permanent | (n - p > 0))


def add(memory: Memory, key: jax.Array, value: jax.Array,
        permanent: bool | jax.Array = False) -> Memory:
  """Writes one frame into the bank (pure; `permanent` may be traced).

  Args:
    memory: the bank.
    key: (h, w, Ck) the frame's key.
    value: (K, h, w, Cv) the frame's values.
    permanent: write into the next free permanent slot (the last one is
      overwritten when all are taken) instead of the ring buffer.

  Returns:
    The new bank. With no ring slots (capacity == num_permanent) a
    non-permanent add leaves the bank unchanged.
  """
  slot, write = next_slot(memory, permanent)
  keep = lambda new, old: jnp.where(write, new, old)
  return memory.replace(
      keys=keep(memory.keys.at[slot].set(key.astype(memory.keys.dtype)),
                memory.keys),
      values=keep(memory.values.at[:, slot].set(
          value.astype(memory.values.dtype)), memory.values),
      valid=keep(memory.valid.at[slot].set(True), memory.valid),
      # The ring advances when it took the frame.
      ring_count=memory.ring_count + jnp.where(
          jnp.asarray(permanent) | ~write, 0, 1).astype(jnp.int32))


def affinity(memory_keys: jax.Array, query_keys: jax.Array) -> jax.Array:
  """STCN's L2 affinity, (Q, M) from memory (M, C) and query (Q, C) keys.

  -|k_m - k_q|^2 / sqrt(C) without the -|k_q|^2 term: it is constant over
  the memory positions a query's softmax runs over, so it cancels.
  """
  c = memory_keys.shape[-1]
  sq = jnp.sum(jnp.square(memory_keys), axis=-1)
  return (2.0 * query_keys @ memory_keys.T - sq[None, :]) / math.sqrt(c)


def attention(logits: jax.Array, top_k: int | None = None) -> jax.Array:
  """Softmax over the last axis, keeping only the `top_k` largest entries.

  Args:
    logits: (Q, M) affinities; -inf marks positions to ignore.
    top_k: static k; None (or k >= M) = softmax over everything.
  """
  if top_k is None or top_k >= logits.shape[-1]:
    return jax.nn.softmax(logits, axis=-1)
  vals, idx = jax.lax.top_k(logits, top_k)
  rows = jnp.arange(logits.shape[0])[:, None]
  return jnp.zeros_like(logits).at[rows, idx].set(
      jax.nn.softmax(vals, axis=-1))


def readout(memory: Memory, query_key: jax.Array,
            top_k: int | None = None) -> jax.Array:
  """Reads every object's value for one query frame.

  Args:
    memory: the bank; at least one slot must be valid.
    query_key: (h, w, Ck) the query frame's key.
    top_k: see `attention`.

  Returns:
    (K, h, w, Cv): per query position, the attention-weighted memory values.
  """
  n, h, w, ck = memory.keys.shape
  k, cv = memory.values.shape[0], memory.values.shape[-1]
  logits = affinity(memory.keys.reshape(-1, ck), query_key.reshape(-1, ck))
  slot_valid = jnp.repeat(memory.valid, h * w)
  logits = jnp.where(slot_valid[None], logits, -jnp.inf)
  weights = attention(logits, top_k)  # (Q, M); the affinity is per frame,
  values = memory.values.reshape(k, n * h * w, cv)  # shared by all objects.
  out = jnp.einsum("qm,kmc->kqc", weights, values)
  return out.reshape(k, h, w, cv)
