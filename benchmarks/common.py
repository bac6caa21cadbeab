"""Helpers shared by the benchmark scripts: timing, machine peak, reporting."""

from __future__ import annotations

import datetime
import os
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp


def time_fn(fn: Callable, *args, repeats: int = 3, warmup: int = 1) -> float:
  """Median wall seconds of `fn(*args)` (blocked until ready) after warm-up."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return sorted(times)[len(times) // 2]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """The machine's measured dense float32 matmul GFLOP/s (XLA, this backend)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  return 2 * n**3 / time_fn(f, a, repeats=repeats) / 1e9


def compiled_flops(compiled) -> float:
  """FLOPs of one call of a compiled function, by XLA's cost analysis."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", 0.0))


# The vector and matrix extensions that decide XLA:CPU's and PyTorch's
# speed: the same script's ratios differ between CPUs that have them and CPUs
# that do not (BENCHMARKS.md), so every machine line names them.
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_description(cpuinfo: str) -> str:
  """'<model name>; <extensions>' from the text of /proc/cpuinfo, e.g.
  'AMD EPYC; avx2 fma avx512f' ('none of ...' when it lists none of
  `_ISA_FLAGS`)."""
  model, flags = "", set()
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(":")
    if key.strip() == "model name" and not model:
      model = value.strip()
    elif key.strip() == "flags" and not flags:
      flags = set(value.split())
  have = [f for f in _ISA_FLAGS if f in flags]
  isa = " ".join(have) if have else "none of " + " ".join(_ISA_FLAGS)
  return f"{model or platform.processor() or platform.machine()}; {isa}"


def machine_line() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      cpu = cpu_description(f.read())
  except OSError:  # not Linux
    cpu = platform.processor() or platform.machine()
  return (f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores "
          f"({cpu}), jax {jax.__version__} on {jax.default_backend()}")
