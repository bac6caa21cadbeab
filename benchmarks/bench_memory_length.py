r"""Peak memory and seconds per frame against video length, per memory network.

Three ways to keep memory while propagating one object through a long
video, with the `configs/stcn.py:davis16_cpu` networks (random weights:
neither speed nor memory depends on them) at its evaluation size:

  stcn_unbounded  STCN as published: every `mem_every`-th frame stays in
                  memory, so the bank (and each read) grows with the video
  stcn            the STCN-like network with metavos's ring buffer of
                  `max_memory` frames (bounded, forgets what scrolls out)
  xmem            the XMem-style network: the same working memory plus a
                  long-term memory of `xmem.long_term_size` positions fed by
                  the frames the ring evicts, and a sensory memory

Each (network, length) runs in a fresh process that streams synthetic
frames (a square moving over noise, decoded on demand) through propagation itself
(`metavos.memory.propagate.propagate_steps`: encode, read and decode,
memorize every `mem_every` frames) and keeps no outputs, so the process's peak resident
memory is the runtime, the compiled programs and the memory itself. Printed
per row: the peak RSS, the memory pytree's exact bytes, and the median
seconds per frame after the first 10 (compilation excluded).

  python -m benchmarks.bench_memory_length
  python -m benchmarks.bench_memory_length --lengths=100,500,2000 --height=240 --width=427
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import resource
import subprocess
import sys
import time

import jax
import numpy as np

from benchmarks import common

VARIANTS = ("stcn_unbounded", "stcn", "xmem")


@functools.cache
def _noise(size: tuple[int, int]) -> np.ndarray:
  return np.random.default_rng(0).random(tuple(size) + (3,), np.float32) * 0.5


def _frame(t: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Frame t (H, W, 3) in [0, 1] and its mask (1, H, W): a square moving
  over fixed noise."""
  h, w = size
  frame = _noise(size).copy()
  mask = np.zeros((1, h, w), np.float32)
  s = h // 4
  y, x = (t * 3) % (h - s), (t * 5) % (w - s)
  frame[y:y + s, x:x + s] += 0.5
  mask[0, y:y + s, x:x + s] = 1.0
  return frame, mask


class _Frames:
  """A synthetic video decoded on demand: `frames[t]`, `frames.shape`."""

  def __init__(self, length: int, size: tuple[int, int]):
    self.shape = (length,) + tuple(size) + (3,)

  def __getitem__(self, t: int) -> np.ndarray:
    return _frame(t, self.shape[1:3])[0]


def run_one(variant: str, length: int, size: tuple[int, int]) -> dict:
  """Streams `length` frames through one network; runs in its own process."""
  from configs import stcn as stcn_config  # pylint: disable=import-outside-toplevel
  from metavos.memory import propagate  # pylint: disable=import-outside-toplevel
  from metavos.methods import memory_networks  # pylint: disable=import-outside-toplevel
  network = "xmem" if variant == "xmem" else "stcn"
  config = stcn_config.get_config(f"davis16_cpu,network={network}")
  m = config.memory
  fns, params = memory_networks.build_network(config)
  cfg = propagate.PropagateConfig.from_config(m)
  if variant == "stcn_unbounded":  # room for every memory frame
    cfg = dataclasses.replace(cfg, max_memory=2 + (length - 1) // m.mem_every)
  given = {0: (_frame(0, size)[1], np.ones((1,), bool))}
  steps = propagate.propagate_steps(fns, params, _Frames(length, size),
                                    range(length), given, cfg)
  times, t0 = [], time.perf_counter()
  for _ in steps:  # each step's probabilities are fetched (np.asarray)
    times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
  # The memory itself, from its shapes: the one that propagation builds.
  frame = jax.ShapeDtypeStruct((1,) + tuple(size) + (3,), np.float32)
  feats = jax.eval_shape(lambda f: jax.tree.map(
      lambda x: x[0], fns.encode_key(params, f)), frame)
  memory = jax.eval_shape(
      lambda f, k: fns.new_memory(params, f[0], k,
                                  np.zeros((1,) + tuple(size), np.float32),
                                  cfg.max_memory), frame, feats)
  state = sum(math.prod(x.shape) * x.dtype.itemsize
              for x in jax.tree.leaves(memory))
  return {"network": variant, "frames": length,
          "memory_frames": cfg.max_memory,
          "state_mb": round(state / 2**20, 2),
          "peak_rss_mb": round(resource.getrusage(
              resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
          "s_per_frame": round(float(np.median(times[11:] or times)), 4)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--height", type=int, default=120)
  parser.add_argument("--width", type=int, default=214)
  parser.add_argument("--lengths", default="100,500,2000")
  parser.add_argument("--networks", default=",".join(VARIANTS))
  parser.add_argument("--one", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  size = (args.height, args.width)
  if args.one:  # the child: one (network, length)
    variant, length = args.one.split(":")
    print(json.dumps(run_one(variant, int(length), size)), flush=True)
    return
  print(common.machine_line(), flush=True)
  print(f"# {size[0]}x{size[1]}, 1 object, configs/stcn.py:davis16_cpu "
        "memory settings", flush=True)
  for length in map(int, args.lengths.split(",")):
    for variant in args.networks.split(","):
      out = subprocess.run(
          [sys.executable, "-m", "benchmarks.bench_memory_length",
           f"--one={variant}:{length}", f"--height={size[0]}",
           f"--width={size[1]}"], capture_output=True, text=True, check=True)
      print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
  main()
