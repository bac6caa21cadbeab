"""Every choice metavos makes by platform, decided here once.

metavos' programs are written for accelerators: rolled inner loops
(`lax.scan`), every task and object of a batch vmapped together, XLA's own
convolutions. XLA:CPU, where tests, Colab without an accelerator and the
2-core recipes run, is slow on exactly those shapes, measured on this
project's CPU boxes (BENCHMARKS.md):

- a rolled loop around convolution weight gradients runs 10-100x slower
  than the same loop unrolled (`unroll`: full unrolling on CPU);
- vmapping per-item weights turns each convolution into a grouped one,
  several times slower than the same items one call after another
  (`items_per_call`: one task / object per call on CPU, via
  metavos.runtime.chunking);
- its convolution weight gradient is ~10x slower than the forward pass;
  a blocked im2col matmul (metavos.models.conv) is 2-5x faster
  (`conv_general_dilated` / `conv_same`: that path on CPU only).

On GPU and TPU every choice below is the plain one (rolled loops, all items
vmapped, `lax.conv_general_dilated`), so those programs hold no CPU
work-around. Config fields that take -1 mean "decide by platform" here.
"""

from __future__ import annotations

from typing import Callable

import jax
from jax import lax

AUTO = -1


def is_cpu() -> bool:
  """Whether jit compiles for XLA:CPU (the default backend)."""
  return jax.default_backend() == "cpu"


def unroll(value: int) -> bool | int:
  """Inner-loop unrolling for `lax.scan`: `value` -1 = full unrolling on CPU,
  rolled (1) elsewhere; 0 = full; N = N steps per loop iteration."""
  if value == AUTO:
    return True if is_cpu() else 1
  return True if value == 0 else int(value)


def items_per_call(value: int) -> int:
  """Tasks or objects adapted per call: `value` -1 = one on CPU, all (0)
  elsewhere; otherwise `value` (0 = all vmapped together)."""
  if value == AUTO:
    return 1 if is_cpu() else 0
  return int(value)


def conv_general_dilated() -> Callable:
  """The convolution models hand to `nnx.Conv(conv_general_dilated=...)`:
  the blocked-weight-gradient one on CPU, `lax.conv_general_dilated`
  elsewhere."""
  if is_cpu():
    from metavos.models import conv  # pylint: disable=g-import-not-at-top
    return conv.conv_general_dilated
  return lax.conv_general_dilated


def conv_same() -> Callable:
  """`conv_same(x, k, stride, padding)` (NHWC x HWIO, explicit padding) of
  this platform: metavos.models.conv's on CPU, plain lax elsewhere."""
  from metavos.models import conv  # pylint: disable=g-import-not-at-top
  return conv.conv_same if is_cpu() else conv.plain_conv_same
