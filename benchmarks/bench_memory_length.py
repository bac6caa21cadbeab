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
frames (a square moving over noise) through propagation's own jitted steps
(`metavos.memory.propagate`: encode, read and decode, memorize every
`mem_every` frames) and keeps no outputs, so the process's peak resident
memory is the runtime, the compiled programs and the memory itself. Printed
per row: the peak RSS, the memory pytree's exact bytes, and the median
seconds per frame after the first 10 (compilation excluded).

  python -m benchmarks.bench_memory_length
  python -m benchmarks.bench_memory_length --lengths=100,500,2000 --height=240 --width=427
"""

from __future__ import annotations

import argparse
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


def _frame(t: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Frame t (H, W, 3) in [0, 1] and its mask (1, H, W): a square moving
  over fixed noise."""
  h, w = size
  rng = np.random.default_rng(0)
  frame = rng.random((h, w, 3), np.float32) * 0.5
  mask = np.zeros((1, h, w), np.float32)
  s = h // 4
  y, x = (t * 3) % (h - s), (t * 5) % (w - s)
  frame[y:y + s, x:x + s] += 0.5
  mask[0, y:y + s, x:x + s] = 1.0
  return frame, mask


def run_one(variant: str, length: int, size: tuple[int, int]) -> dict:
  """Streams `length` frames through one network; runs in its own process."""
  from configs import stcn as stcn_config  # pylint: disable=import-outside-toplevel
  from metavos.memory import propagate  # pylint: disable=import-outside-toplevel
  from metavos.methods import memory_networks  # pylint: disable=import-outside-toplevel
  network = "xmem" if variant == "xmem" else "stcn"
  config = stcn_config.get_config(f"davis16_cpu,network={network}")
  m = config.memory
  fns, params = memory_networks.build_network(config)
  capacity = (1 + (length - 1) // m.mem_every + 1
              if variant == "stcn_unbounded" else m.max_memory)
  top_k = m.top_k or None
  present = np.ones((1,), bool)
  # pylint: disable=protected-access
  frame, mask = _frame(0, size)
  feats = propagate._encode(fns, params, frame)
  memory = propagate._new_memory(fns, params, frame, feats, mask, capacity, 1)
  times = []
  for t in range(1, length):
    frame, _ = _frame(t, size)
    t0 = time.perf_counter()
    feats = propagate._encode(fns, params, frame)
    probs, memory = propagate._predict(fns, params, memory, feats, present,
                                       top_k, size)
    if t % m.mem_every == 0:
      memory = propagate._memorize(fns, params, memory, frame, feats, probs,
                                   False)
    jax.block_until_ready((probs, memory))
    times.append(time.perf_counter() - t0)
  state = sum(math.prod(x.shape) * x.dtype.itemsize
              for x in jax.tree.leaves(memory))
  return {"network": variant, "frames": length,
          "memory_frames": capacity,
          "state_mb": round(state / 2**20, 2),
          "peak_rss_mb": round(resource.getrusage(
              resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
          "s_per_frame": round(float(np.median(times[10:] or times)), 4)}


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
