r"""Inference memory against video length: bounded vs unbounded memory bank.

MemorySegmenter (metavos.memory.propagate) adds a frame to memory every
`mem_every` frames. With `max_memory` the bank is a fixed ring of that many
frames; unbounded, it must hold 1 + (L - 1) // mem_every frames for a video
of L frames. Per length this prints, for both, the memory frames, the bank's
bytes (keys + values, computed from its shapes) and XLA's compiled memory
analysis of the per-frame read-and-decode program (`propagate._predict`:
arguments + temporaries, which holds the query-by-memory affinity). Nothing
here runs a video: both numbers are exact functions of the shapes.

  python benchmarks/bench_oneshot_memory.py
  python benchmarks/bench_oneshot_memory.py --height=480 --width=854
"""

from __future__ import annotations

import argparse
import json
import math

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks import common
from configs import oneshot as oneshot_config
from metavos.memory import bank, network, propagate


def predict_bytes(fns, params, capacity: int, size, k: int, top_k) -> dict:
  """Bank bytes and compiled bytes of one `_predict` call at `capacity`."""
  frame = jax.ShapeDtypeStruct((1,) + tuple(size) + (3,), jnp.float32)
  feats = jax.eval_shape(lambda f: network.frame_features(
      fns.encode_key(params, f), 0), frame)
  value = jax.eval_shape(
      lambda f, f16, m: fns.encode_value(params, f[0], f16, m), frame,
      feats.f16, jax.ShapeDtypeStruct((k,) + tuple(size), jnp.float32))
  memory = jax.eval_shape(lambda: bank.empty(capacity, feats.key.shape,
                                             value.shape))
  present = jax.ShapeDtypeStruct((k,), bool)
  compiled = propagate._predict.lower(  # pylint: disable=protected-access
      fns, params, memory, feats, present, top_k, tuple(size)).compile()
  mem = compiled.memory_analysis()
  bank_bytes = sum(math.prod(x.shape) * x.dtype.itemsize
                   for x in (memory.keys, memory.values))
  return {"bank_mb": round(bank_bytes / 2**20, 2),
          "predict_mb": round((mem.argument_size_in_bytes
                               + mem.temp_size_in_bytes) / 2**20, 2)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--height", type=int, default=120)
  parser.add_argument("--width", type=int, default=214)
  parser.add_argument("--lengths", default="25,50,100,200,400,800")
  args = parser.parse_args()
  config = oneshot_config.get_config("davis16_cpu")
  m = config.memory
  fns, params = network.build(m, nnx.Rngs(0))
  size, k = (args.height, args.width), 1
  print(common.machine_line(), flush=True)
  print(f"# {size[0]}x{size[1]}, K={k}, mem_every={m.mem_every}, "
        f"max_memory={m.max_memory}, top_k={m.top_k}", flush=True)
  bounded = predict_bytes(fns, params, m.max_memory, size, k, m.top_k)
  for length in map(int, args.lengths.split(",")):
    frames = 1 + (length - 1) // m.mem_every
    row = {"frames": length, "bounded_memory_frames": min(frames,
                                                          m.max_memory),
           **{f"bounded_{a}": b for a, b in bounded.items()},
           "unbounded_memory_frames": frames}
    unbounded = predict_bytes(fns, params, max(frames, 2), size, k, m.top_k)
    row.update({f"unbounded_{a}": b for a, b in unbounded.items()})
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()
