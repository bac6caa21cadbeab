"""`chunked_vmap`: a batched function over its leading axis, a few items per
call, one call after another.

Used where vmapping every item at once is slower than doing them in chunks:
on XLA:CPU vmapped per-item weights become grouped convolutions (several
times slower than the same items one after another), and a rolled loop
(`lax.map`) runs strided convolutions' gradients ~10x slower than a Python
loop of calls (BENCHMARKS.md, "tasks per call"). e-OSVOS meta-batches
(`meta.tasks_per_call`) and the objects of a video (`finetune.objects_per_call`)
go through it; each item's result does not depend on the chunk size.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def chunked_vmap(batched_fn: Callable[..., Any], chunk: int, *args: Any):
  """`batched_fn(*args)`, computed `chunk` items at a time.

  Args:
    batched_fn: maps over the leading axis of every leaf of `args` (e.g. a
      `jax.vmap`ped function) and returns a pytree whose leaves all have that
      leading axis.
    chunk: items per call; 0 (or at least the number of items) = one call.
    *args: pytrees whose leaves share the leading axis size N.

  Returns:
    The outputs of the calls concatenated along axis 0 (as one call's).
  """
  n = jax.tree.leaves(args)[0].shape[0]
  if not chunk or chunk >= n:
    return batched_fn(*args)
  parts = [batched_fn(*jax.tree.map(lambda x, a=a: x[a:a + chunk], args))
           for a in range(0, n, chunk)]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
