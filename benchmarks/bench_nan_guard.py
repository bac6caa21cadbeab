r"""Cost of the training loop's NaN guard: the host check against a jitted one.

`metavos.methods.train_loop.check_finite` checks every floating-point leaf
of the training state and the step's metrics on the host (numpy), at the
steps the loop logs or saves. Until 2026-12-08 it was one jitted program of
a reduction per leaf, run after every step; this script times both on two
states shaped like real ones (parameters + AdamW's two moments):

  vgg16      the 13 convolutions of VGG16 (26 leaves) x 3 = 78 leaves,
             44 M floats: few, large leaves.
  many       400 small leaves (1-4 dims of 1..39), about a memory
             network's state (the default STCN-like and XMem-style
             networks: 109 and 121 parameter leaves, x3 with AdamW).

For the jitted check: compile seconds and milliseconds a call; for the
host check: milliseconds a call (nothing to compile). With
`--fast_compile` both run under `jax_disable_most_optimizations`, the tests'
setting.

  python -m benchmarks.bench_nan_guard
  python -m benchmarks.bench_nan_guard --fast_compile
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from metavos.methods import train_loop

_VGG16 = [(3, 3, 3, 64), (3, 3, 64, 64), (3, 3, 64, 128), (3, 3, 128, 128)] + [
    (3, 3, 128, 256), (3, 3, 256, 256), (3, 3, 256, 256)] + [
        (3, 3, 256, 512)] + [(3, 3, 512, 512)] * 5


def _states() -> dict[str, dict]:
  vgg = [jnp.ones(s) for k in _VGG16 for s in (k, k[-1:])]
  rng = np.random.default_rng(0)
  many = [jnp.ones(tuple(rng.integers(1, 40, size=rng.integers(1, 5))))
          for _ in range(400)]
  return {"vgg16": {"params": vgg, "mu": vgg, "nu": vgg},
          "many": {"leaves": many}}


def _per_leaf(tree) -> jax.Array:
  """The previous guard: (L,) whether each floating-point leaf is finite."""
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
                    if jnp.issubdtype(jnp.result_type(x), jnp.inexact)])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--fast_compile", action="store_true",
                      help="jax_disable_most_optimizations (the tests')")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  jax.config.update("jax_disable_most_optimizations", args.fast_compile)
  print(common.machine_line())
  print(f"jax_disable_most_optimizations={args.fast_compile}")
  print("| state | leaves | M floats | jitted: compile s | jitted: ms a call "
        "| host: ms a call |")
  print("|---|---|---|---|---|---|")
  for name, state in _states().items():
    leaves = jax.tree.leaves(state)
    t0 = time.perf_counter()
    compiled = jax.jit(_per_leaf).lower(state).compile()
    compile_s = time.perf_counter() - t0
    assert jax.device_get(compiled(state)).all()
    jitted = common.time_fn(compiled, state, repeats=args.repeats)

    def host(state=state):
      train_loop.check_finite(state, {}, step=1, last_checkpoint=None)
      return jnp.zeros(())

    on_host = common.time_fn(host, repeats=args.repeats)
    print(f"| {name} | {len(leaves)} | "
          f"{sum(x.size for x in leaves) / 1e6:.1f} | {compile_s:.2f} | "
          f"{jitted * 1e3:.1f} | {on_host * 1e3:.1f} |")


if __name__ == "__main__":
  main()
