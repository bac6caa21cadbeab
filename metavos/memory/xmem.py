"""XMem-style memory network (Cheng & Schwing, ECCV 2022) in flax.nnx.

The STCN-like network of metavos.memory.network (same key encoder, value
encoder and decoder), with XMem's three memories, so that memory stays
bounded on long videos without forgetting what scrolled out of the window:

- **Sensory memory**: a per-object hidden state (K, h, w, sensory_dim) at
  stride 16, read by the decoder beside the memory readout and updated by a
  convolutional GRU at every frame (from the decoder's features and its
  logits) and at every memory frame (from the new value).
- **Working memory**: the last frames written (a `bank.Memory`: permanent
  slots for the annotated frames, a ring buffer for the rest), read with
  XMem's anisotropic L2 similarity: the memory key's shrinkage s >= 1 (how
  sharply it is read) and the query's selection e in (0, 1)^C (which key
  channels count): sim = -s * sum_c e_c (k_c - q_c)^2 / sqrt(C).
- **Long-term memory**: `long_term_size` positions. When the ring buffer
  evicts a frame, its `num_prototypes` most used positions (attention mass
  received per read, XMem's usage) become prototypes whose values are read
  from all of the evicted frame's positions (XMem's memory potentiation),
  and they replace the least used long-term positions.

Every read (top-k) runs over the long-term and working memories together.
Training clips are short, so in training (metavos.memory.chain, capacity =
clip length) nothing is evicted and the long-term memory stays empty, as in
XMem's training; it comes into play when propagating videos longer than the
working memory (`memory.max_memory` frames).

The pure functions (`XMemFns`) follow `network.MemoryModel`, so every
memory-network method trains this network unchanged
(`--config.memory.network=xmem`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax import struct

from metavos.memory import bank, network
from metavos.models import resnet

Params = network.Params


@struct.dataclass
class LongTermMemory:
  """Memory positions kept after their frame left the working memory.

  Attributes:
    keys: (L, Ck).
    shrinkage: (L,).
    values: (K, L, Cv).
    valid: (L,) bool.
    usage: (L,) attention mass received while in memory.
    life: (L,) reads while in memory (usage / life = XMem's usage).
  """
  keys: jax.Array
  shrinkage: jax.Array
  values: jax.Array
  valid: jax.Array
  usage: jax.Array
  life: jax.Array


@struct.dataclass
class XMemMemory:
  """The XMem-style network's memory (a pytree of static shapes).

  Attributes:
    working: the working memory's frames (keys (N, h, w, Ck), values
      (K, N, h, w, Cv)).
    shrinkage: (N, h, w) shrinkage of the working memory's keys.
    usage: (N, h, w) attention mass each working position received.
    life: (N, h, w) reads since each working position was written.
    long_term: the long-term memory.
    hidden: (K, h, w, Cs) the sensory memory.
  """
  working: bank.Memory
  shrinkage: jax.Array
  usage: jax.Array
  life: jax.Array
  long_term: LongTermMemory
  hidden: jax.Array


def similarity(mem_keys: jax.Array, mem_shrinkage: jax.Array,
               query_keys: jax.Array,
               selection: jax.Array | None = None) -> jax.Array:
  """XMem's anisotropic L2 similarity, (Q, M).

  -s_m * sum_c e_qc (k_mc - q_qc)^2 / sqrt(C) for memory keys (M, C) with
  shrinkage (M,) and query keys (Q, C) with selection (Q, C) (None = all
  ones). Unlike STCN's, the query's own term does not cancel in the
  softmax: it is scaled by each memory position's shrinkage.
  """
  c = mem_keys.shape[-1]
  if selection is None:
    selection = jnp.ones_like(query_keys)
  a_sq = selection @ jnp.square(mem_keys).T              # (Q, M)
  two_ab = 2.0 * (query_keys * selection) @ mem_keys.T   # (Q, M)
  b_sq = jnp.sum(selection * jnp.square(query_keys), -1, keepdims=True)
  return (two_ab - a_sq - b_sq) * mem_shrinkage[None] / math.sqrt(c)


def _flat_positions(memory: XMemMemory):
  """Every memory position, long-term first: keys (M, Ck), shrinkage (M,),
  values (K, M, Cv), valid (M,)."""
  w, lt = memory.working, memory.long_term
  n, h, wd, ck = w.keys.shape
  k, cv = w.values.shape[0], w.values.shape[-1]
  keys = jnp.concatenate([lt.keys, w.keys.reshape(-1, ck)])
  shrink = jnp.concatenate([lt.shrinkage, memory.shrinkage.reshape(-1)])
  values = jnp.concatenate([lt.values, w.values.reshape(k, -1, cv)], axis=1)
  valid = jnp.concatenate([lt.valid, jnp.repeat(w.valid, h * wd)])
  return keys, shrink, values, valid


def read(memory: XMemMemory, query_key: jax.Array,
         selection: jax.Array | None, top_k: int | None = None
         ) -> tuple[jax.Array, XMemMemory]:
  """Reads every object's value for one query frame from the long-term and
  working memories, and counts the read in their usage.

  Args:
    memory: at least one working slot valid.
    query_key: (h, w, Ck).
    selection: (h, w, Ck) or None.
    top_k: static; see `bank.attention`.

  Returns:
    (readout (K, h, w, Cv), the memory with usage and life updated).
  """
  h, wd, ck = query_key.shape
  keys, shrink, values, valid = _flat_positions(memory)
  sel = None if selection is None else selection.reshape(-1, ck)
  logits = similarity(keys, shrink, query_key.reshape(-1, ck), sel)
  weights = bank.attention(jnp.where(valid[None], logits, -jnp.inf), top_k)
  out = jnp.einsum("qm,kmc->kqc", weights, values)
  # Usage steers what is consolidated and evicted; it is not learned.
  mass = jax.lax.stop_gradient(jnp.sum(weights, axis=0))
  lt, num_lt = memory.long_term, memory.long_term.keys.shape[0]
  w_valid = memory.working.valid[:, None, None]
  memory = memory.replace(
      usage=memory.usage + mass[num_lt:].reshape(memory.usage.shape),
      life=memory.life + w_valid.astype(memory.life.dtype),
      long_term=lt.replace(usage=lt.usage + mass[:num_lt],
                           life=lt.life + lt.valid.astype(lt.life.dtype)))
  return out.reshape(-1, h, wd, values.shape[-1]), memory


def consolidate(memory: XMemMemory, slot: jax.Array,
                num_prototypes: int) -> XMemMemory:
  """Moves working slot `slot`'s most used positions into long-term memory.

  Its `num_prototypes` positions of highest usage / life become prototypes;
  a prototype's value and shrinkage are read (softmax over the similarity,
  plain L2 with the candidates' shrinkage) from all of the slot's positions
  (XMem's memory potentiation). They overwrite the long-term positions of
  lowest usage / life, empty ones first; they start with their own usage
  ratio and a life of 1.
  """
  w, lt = memory.working, memory.long_term
  ck = w.keys.shape[-1]
  keys = w.keys[slot].reshape(-1, ck)
  shrink = memory.shrinkage[slot].reshape(-1)
  values = w.values[:, slot].reshape(w.values.shape[0], -1,
                                     w.values.shape[-1])
  ratio = (memory.usage[slot] / jnp.maximum(memory.life[slot], 1)).reshape(-1)
  score, pick = jax.lax.top_k(ratio, num_prototypes)
  proto = keys[pick]
  weights = jax.nn.softmax(similarity(keys, shrink, proto), axis=-1)
  lt_ratio = jnp.where(lt.valid, lt.usage / jnp.maximum(lt.life, 1), -jnp.inf)
  _, out = jax.lax.top_k(-lt_ratio, num_prototypes)
  return memory.replace(long_term=lt.replace(
      keys=lt.keys.at[out].set(proto),
      shrinkage=lt.shrinkage.at[out].set(weights @ shrink),
      values=lt.values.at[:, out].set(
          jnp.einsum("gp,kpc->kgc", weights, values)),
      valid=lt.valid.at[out].set(True),
      usage=lt.usage.at[out].set(score),
      life=lt.life.at[out].set(1.0)))


def write(memory: XMemMemory, key: jax.Array, shrinkage: jax.Array,
          value: jax.Array, permanent: bool | jax.Array,
          num_prototypes: int) -> XMemMemory:
  """Writes one frame into the working memory (as `bank.add`); a frame the
  ring buffer evicts for it is consolidated into long-term memory first."""
  w = memory.working
  slot, written = bank.next_slot(w, permanent)
  evicts = ~jnp.asarray(permanent) & (w.capacity > w.num_permanent) & (
      w.valid[slot])
  memory = memory.replace(long_term=jax.tree.map(
      lambda new, old: jnp.where(evicts, new, old),
      consolidate(memory, slot, num_prototypes).long_term, memory.long_term))
  added = bank.add(w, key, value, permanent)
  reset = lambda a, x: jnp.where(written, a.at[slot].set(x), a)
  return memory.replace(
      working=added,
      shrinkage=reset(memory.shrinkage, shrinkage.astype(
          memory.shrinkage.dtype)),
      usage=reset(memory.usage, 0.0), life=reset(memory.life, 0.0))


class ConvGRU(nnx.Module):
  """A convolutional GRU cell (3x3 gates) updating a hidden map."""

  def __init__(self, in_ch: int, hidden_ch: int, *, rngs: nnx.Rngs):
    self.gates = resnet.conv(in_ch + hidden_ch, 2 * hidden_ch, 3, 1, rngs,
                             use_bias=True)
    self.candidate = resnet.conv(in_ch + hidden_ch, hidden_ch, 3, 1, rngs,
                                 use_bias=True)

  def __call__(self, x: jax.Array, hidden: jax.Array) -> jax.Array:
    z, r = jnp.split(jax.nn.sigmoid(
        self.gates(jnp.concatenate([x, hidden], -1))), 2, axis=-1)
    n = jnp.tanh(self.candidate(jnp.concatenate([x, r * hidden], -1)))
    return (1.0 - z) * hidden + z * n


class XMemNetwork(network.MemoryNetwork):
  """The STCN-like network plus XMem's key shrinkage and selection and a
  sensory memory read by the decoder."""

  def __init__(self, key_backbone: str = "small",
               value_backbone: str = "tiny", key_dim: int = 64,
               value_dim: int = 128, decoder_dim: int = 64,
               norm_groups: int = 8, sensory_dim: int = 32,
               frozen_key_stages: int = 0, *, rngs: nnx.Rngs):
    """As `network.MemoryNetwork`; `sensory_dim` is the channels of the
    per-object hidden state."""
    # The decoder reads the hidden state beside the memory readout.
    super().__init__(key_backbone, value_backbone, key_dim, value_dim,
                     decoder_dim, norm_groups, extra_readout=sensory_dim,
                     frozen_key_stages=frozen_key_stages, rngs=rngs)
    c16 = self.key_proj.in_features
    self.shrink_proj = resnet.conv(c16, 1, 3, 1, rngs, use_bias=True)
    self.select_proj = resnet.conv(c16, key_dim, 3, 1, rngs, use_bias=True)
    self.sensory_from_decoder = ConvGRU(decoder_dim + 1, sensory_dim,
                                        rngs=rngs)
    self.sensory_from_value = ConvGRU(value_dim, sensory_dim, rngs=rngs)
    self.sensory_dim = sensory_dim

  def encode_key(self, frames: jax.Array) -> network.KeyFeatures:
    """frames (B, H, W, 3) -> KeyFeatures with shrinkage and selection."""
    feats = super().encode_key(frames)
    return feats._replace(
        shrinkage=jnp.square(self.shrink_proj(feats.f16)[..., 0]) + 1.0,
        selection=jax.nn.sigmoid(self.select_proj(feats.f16)))

  def decode_sensory(self, readout: jax.Array, hidden: jax.Array,
                     feats: network.KeyFeatures, size: tuple[int, int]
                     ) -> tuple[jax.Array, jax.Array]:
    """readout (K, h, w, Cv) and hidden (K, h, w, Cs) -> (logits (K, H, W),
    the hidden state updated from the decoder)."""
    x = self.compress_readout(jnp.concatenate([readout, hidden], -1), feats)
    logits = self.upsample(x, feats, size)
    small = network.resize_to(logits[..., None], x.shape[1:3])
    return logits, self.sensory_from_decoder(
        jnp.concatenate([x, small], -1), hidden)


@dataclasses.dataclass(frozen=True)
class XMemFns:
  """Pure functions of an XMemNetwork's parameter tree
  (`network.MemoryModel`; hashable, a static argument of jax.jit).

  Attributes:
    graphdef: the split network's graph.
    long_term_size: long-term memory positions (at least one frame's
      prototypes).
    num_prototypes: positions of an evicted frame kept (at most its h * w).
  """
  graphdef: Any
  long_term_size: int = 1024
  num_prototypes: int = 64

  def _net(self, params: Params) -> XMemNetwork:
    return nnx.merge(self.graphdef, params)

  def _budget(self, key: jax.Array) -> tuple[int, int]:
    """(prototypes per evicted frame, long-term positions) for keys of one
    frame's shape (h, w, Ck)."""
    g = min(self.num_prototypes, key.shape[0] * key.shape[1])
    return g, max(self.long_term_size, g)

  def encode_key(self, params: Params, frames: jax.Array
                 ) -> network.KeyFeatures:
    return self._net(params).encode_key(frames)

  def _value(self, net: XMemNetwork, frame, feats, masks, hidden):
    value = net.encode_value(frame, feats.f16, masks)
    return value, net.sensory_from_value(value, hidden)

  def new_memory(self, params: Params, frame: jax.Array,
                 feats: network.KeyFeatures, masks: jax.Array,
                 capacity: int, num_permanent: int = 1) -> XMemMemory:
    net = self._net(params)
    h, w, ck = feats.key.shape
    k, dt = masks.shape[0], feats.key.dtype
    value, hidden = self._value(
        net, frame, feats, masks, jnp.zeros((k, h, w, net.sensory_dim), dt))
    num_prototypes, size = self._budget(feats.key)
    zeros = lambda *s: jnp.zeros(s, dt)
    memory = XMemMemory(
        working=bank.empty(capacity, feats.key.shape, value.shape,
                           num_permanent, dt),
        shrinkage=zeros(capacity, h, w), usage=zeros(capacity, h, w),
        life=zeros(capacity, h, w),
        long_term=LongTermMemory(
            keys=zeros(size, ck), shrinkage=zeros(size),
            values=zeros(k, size, value.shape[-1]),
            valid=jnp.zeros((size,), bool), usage=zeros(size),
            life=zeros(size)),
        hidden=hidden)
    return write(memory, feats.key, feats.shrinkage, value, True,
                 num_prototypes)

  def memorize(self, params: Params, memory: XMemMemory, frame: jax.Array,
               feats: network.KeyFeatures, masks: jax.Array,
               permanent: bool | jax.Array = False) -> XMemMemory:
    value, hidden = self._value(self._net(params), frame, feats, masks,
                                memory.hidden)
    return write(memory.replace(hidden=hidden), feats.key, feats.shrinkage,
                 value, permanent, self._budget(feats.key)[0])

  def predict(self, params: Params, memory: XMemMemory,
              feats: network.KeyFeatures, size: tuple[int, int],
              present: jax.Array | None = None, top_k: int | None = None
              ) -> tuple[jax.Array, XMemMemory]:
    readout, memory = read(memory, feats.key, feats.selection, top_k)
    logits, hidden = self._net(params).decode_sensory(
        readout, memory.hidden, feats, size)
    return (network.aggregate(logits, present),
            memory.replace(hidden=hidden))


def build(cfg, rngs: nnx.Rngs) -> tuple[XMemFns, Params]:
  """Builds and splits the XMem-style network from a `memory` config block
  (its `xmem` sub-block sizes the sensory and long-term memories).

  Returns:
    (fns, params).
  """
  x = cfg.xmem
  net = XMemNetwork(cfg.key_backbone, cfg.value_backbone, cfg.key_dim,
                    cfg.value_dim, cfg.decoder_dim, cfg.norm_groups,
                    x.sensory_dim, cfg.frozen_key_stages, rngs=rngs)
  network.load_encoders(net, cfg)
  graphdef, params = nnx.split(net, nnx.Param)
  return XMemFns(graphdef, x.long_term_size, x.num_prototypes), params
