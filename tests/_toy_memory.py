"""A toy memory network with MemoryNetwork's interface (tests only): the
trainers and propagation depend on the interface, not on the network."""

import dataclasses

import jax
from flax import nnx

from metavos.memory import bank, network


def tiny_stcn():
  """The STCN-like MemoryNetwork at its smallest (tiny backbones, 8-channel
  keys, values and decoder; fixed init): `(fns, params)`."""
  net = network.MemoryNetwork("tiny", "tiny", key_dim=8, value_dim=8,
                              decoder_dim=8, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(net, nnx.Param)
  return network.make_fns(graphdef), params


def _pool(x, s):
  """Average-pools the (H, W) axes (the 2nd and 3rd from last) by s."""
  *lead, h, w, c = x.shape
  return x.reshape(*lead, h // s, s, w // s, s, c).mean((-4, -2))


@dataclasses.dataclass(frozen=True)
class ToyFns:
  """Linear keys and values of pooled pixels: nothing like MemoryNetwork
  (no nnx module; a plain dict of 4 arrays), same interface."""
  stride: int = 8

  def encode_key(self, params, frames):
    x = _pool(frames, self.stride)
    return {"key": x @ params["key"], "f16": x}

  def encode_value(self, params, frame, f16, masks):
    m = _pool(masks[..., None], self.stride)  # (K, h, w, 1)
    return m * params["value"] + (f16 @ params["mix"])[None]

  def decode(self, params, readout, feats, size):
    small = (readout @ params["out"])[..., 0]
    return jax.image.resize(small, small.shape[:1] + tuple(size), "bilinear")

  def predict(self, params, memory, feats, size, present=None, top_k=None):
    read = bank.readout(memory, feats["key"], top_k)
    logits = network.aggregate(self.decode(params, read, feats, size),
                               present)
    return logits, memory

  def memorize(self, params, memory, frame, feats, masks, permanent=False):
    value = self.encode_value(params, frame, feats["f16"], masks)
    return bank.add(memory, feats["key"], value, permanent)

  def new_memory(self, params, frame, feats, masks, capacity,
                 num_permanent=1):
    value = self.encode_value(params, frame, feats["f16"], masks)
    memory = bank.empty(capacity, feats["key"].shape, value.shape,
                        num_permanent, value.dtype)
    return bank.add(memory, feats["key"], value, permanent=True)


def toy_params():
  keys = jax.random.split(jax.random.key(0), 4)
  return {"key": jax.random.normal(keys[0], (3, 4)),
          "value": jax.random.normal(keys[1], (1, 6)),
          "mix": jax.random.normal(keys[2], (3, 6)),
          "out": jax.random.normal(keys[3], (6, 1))}
