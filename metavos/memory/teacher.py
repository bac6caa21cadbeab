"""The exponential-moving-average (mean) teacher of two-shot training.

Two-shot VOS (Yan et al., 2023) supervises unlabelled frames with the
predictions of a teacher whose parameters trail the student's:

  alpha_t = min(1 - 1 / (t + 1), alpha_max)
  teacher <- alpha_t * teacher + (1 - alpha_t) * student

The ramp (alpha_0 = 0, alpha_1 = 1/2, ...) makes the teacher an equal-weight
average of all students so far while t + 1 < 1 / (1 - alpha_max), so early,
poor students are forgotten quickly; after that it is a plain EMA.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Params = Any  # any pytree of float arrays (the network's parameter tree)

DEFAULT_ALPHA_MAX = 0.995


def ema_alpha(step: jax.Array | int,
              alpha_max: float = DEFAULT_ALPHA_MAX) -> jax.Array:
  """alpha(step) = min(1 - 1 / (step + 1), alpha_max), float32."""
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(1.0 - 1.0 / (t + 1.0), alpha_max)


def ema_update(teacher: Params, student: Params, step: jax.Array | int,
               alpha_max: float = DEFAULT_ALPHA_MAX) -> Params:
  """One teacher update (pure; jit-friendly, `step` may be traced).

  Args:
    teacher: the teacher's parameters.
    student: the student's parameters after the update of `step`.
    step: 0-based index of the student update just made.
    alpha_max: the largest decay (two-shot VOS: 0.995).

  Returns:
    alpha * teacher + (1 - alpha) * student, leaf by leaf, in each
    teacher leaf's dtype.
  """
  alpha = ema_alpha(step, alpha_max)
  return jax.tree.map(
      lambda t, s: (alpha * t + (1.0 - alpha) * s).astype(t.dtype),
      teacher, student)
