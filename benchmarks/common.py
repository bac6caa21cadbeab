"""Helpers shared by the benchmark scripts: timing, machine peak, reporting."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
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


def machine_line() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    model = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo"],
                           capture_output=True, text=True).stdout
    cpu = model.split(":", 1)[1].strip() or cpu
  except (OSError, IndexError):
    pass
  return (f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores "
          f"({cpu}), jax {jax.__version__} on {jax.default_backend()}")
