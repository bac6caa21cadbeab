"""A whole e-OSVOS meta-step with and without the strided/unpadded
convolution fast path of `metavos.models.conv`, compiled in one process and
timed alternately (the box's speed drifts between processes).

  python -m benchmarks.bench_conv_paths [--height 120 --width 214 --steps 5]

"old" routes only stride-1 `kernel // 2`-padded convolutions through
`conv.conv_same` and runs the space-to-depth stem through `lax` (the
session-6 code); "new" is the current code.
"""

import argparse
import time

import jax
from jax import lax

from benchmarks import bench_meta_step as meta_bench
from benchmarks import common
from metavos.models import conv


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--height", type=int, default=120)
  ap.add_argument("--width", type=int, default=214)
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--repeats", type=int, default=7)
  a = ap.parse_args()
  fast_path, conv_same = conv._fast_path, conv.conv_same  # pylint: disable=protected-access

  def stride1_same_only(*args):
    got = fast_path(*args)
    kh, kw = args[1].shape[:2]
    if got is None or got != (1, ((kh // 2, kh // 2), (kw // 2, kw // 2))):
      return None
    return got

  def lax_stem(x, k, stride=1, padding=None):
    if padding != ((0, 0), (0, 0)):  # not the space-to-depth stem
      return conv_same(x, k, stride, padding)
    return lax.conv_general_dilated(x, k, (stride, stride), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))

  params, apply_fn = meta_bench.build("small", 32)
  batch = meta_bench.task_batch(a.height, a.width, 1)
  print("machine:", common.machine_line())
  compiled = {}
  for name, path, stem in [("new", fast_path, conv_same),
                           ("old", stride1_same_only, lax_stem)]:
    conv._fast_path, conv.conv_same = path, stem  # pylint: disable=protected-access
    try:
      fn, args, secs = meta_bench.compile_step(
          params, apply_fn, batch, True, a.steps, 3, "lovasz_hinge", 1)
    finally:
      conv._fast_path, conv.conv_same = fast_path, conv_same  # pylint: disable=protected-access
    compiled[name] = (fn, args)
    print(f"{name}: compile {secs:.1f} s")
  times = {name: [] for name in compiled}
  for _ in range(a.repeats):
    for name, (fn, args) in compiled.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - t0)
  for name, ts in times.items():
    ts = sorted(ts)
    print(f"{name}: median {ts[len(ts) // 2] * 1e3:.1f} ms, "
          f"min {ts[0] * 1e3:.1f} ms")


if __name__ == "__main__":
  main()
