"""Convolution with a faster weight gradient on XLA:CPU.

XLA:CPU computes the weight gradient of a stride-1 convolution 10x slower
than the forward convolution (measured: 3x3, 32->32 channels, 3x240x427:
forward 46 ms, weight gradient 636 ms). The weight gradient of a stride-1
"same" convolution is one matrix product of the im2col patches of the input
with the output gradient, and the input gradient is itself a forward
convolution with the flipped kernel. On CPU this module computes the weight
gradient a few image rows at a time: each block's patches (about
`_BLOCK_BYTES`) are built and multiplied while they are still in cache, so
the 9x larger patch matrix of the whole image never goes through memory.
Measured on the same layer: 125 ms against 282 ms for one matmul per
kernel tap over the whole image (`benchmarks/bench_conv.py`). On other
platforms (the default backend when tracing) the weight gradient is XLA's own.
Every other case (strides, dilation, groups, asymmetric padding) goes to
`lax.conv_general_dilated` unchanged.

`conv_general_dilated` has lax's signature, so it plugs into
`nnx.Conv(..., conv_general_dilated=conv_general_dilated)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _same_conv(x: jax.Array, k: jax.Array) -> jax.Array:
  return lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                  dimension_numbers=_NHWC)


@jax.custom_vjp
def conv_same(x: jax.Array, k: jax.Array) -> jax.Array:
  """Stride-1 convolution, NHWC x HWIO, odd kernel, zero 'same' padding."""
  return _same_conv(x, k)


def _fwd(x, k):
  return _same_conv(x, k), (x, k)


# Bytes of one row block's im2col patches in the CPU weight gradient: the
# block sizes measured fastest for 3x3 layers of 3..128 channels at 60x107
# to 240x427 (benchmarks/bench_conv.py) build 0.3 to 3 MB of patches.
_BLOCK_BYTES = 2 << 20


def block_rows(x_shape: tuple[int, ...], k_shape: tuple[int, ...],
               itemsize: int = 4) -> int:
  """Image rows per block of the CPU weight gradient (at least 1)."""
  b, h, w, cin = x_shape
  kh, kw = k_shape[:2]
  row_bytes = b * w * kh * kw * cin * itemsize
  return int(max(1, min(h, _BLOCK_BYTES // row_bytes)))


def weight_grad_blocked(x: jax.Array, g: jax.Array, kh: int, kw: int,
                        rows: int | None = None) -> jax.Array:
  """d/dk of `conv_same(x, k)` given the output gradient `g`, row blocks.

  For each block of `rows` output rows: the (b * rows * w, kh * kw * cin)
  patches of the input times the (b * rows * w, cout) output gradient,
  summed over blocks in a `fori_loop`.
  """
  b, h, w, cin = x.shape
  cout = g.shape[-1]
  if rows is None:
    rows = block_rows(x.shape, (kh, kw), x.dtype.itemsize)
  blocks = -(-h // rows)
  extra = blocks * rows - h       # zero rows so every block is full
  xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2 + extra), (kw // 2, kw // 2),
                   (0, 0)))
  gp = jnp.pad(g, ((0, 0), (0, extra), (0, 0), (0, 0)))

  def block(r):
    xs = lax.dynamic_slice_in_dim(xp, r * rows, rows + kh - 1, axis=1)
    gs = lax.dynamic_slice_in_dim(gp, r * rows, rows, axis=1)
    cols = jnp.concatenate([xs[:, i:i + rows, j:j + w, :] for i in range(kh)
                            for j in range(kw)], axis=-1)
    return cols.reshape(-1, kh * kw * cin).T @ gs.reshape(-1, cout)

  # The sum starts from block 0 (not zeros) so that inside shard_map it has
  # the same device-varying type as every block's product.
  gk = lax.fori_loop(1, blocks, lambda r, acc: acc + block(r), block(0))
  return gk.reshape(kh, kw, cin, cout)


def _weight_grad_xla(x: jax.Array, g: jax.Array, k: jax.Array) -> jax.Array:
  return jax.vjp(lambda k: _same_conv(x, k), k)[1](g)[0]


def _bwd(res, g):
  x, k = res
  kh, kw = k.shape[:2]
  # d/dx: correlation of g with the flipped kernel, in/out channels swapped.
  gx = _same_conv(g, jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2))
  # Chosen when tracing, for the default backend (what jit runs on unless
  # told otherwise): lax.platform_dependent would compile both branches.
  if jax.default_backend() == "cpu":
    gk = weight_grad_blocked(x, g, kh, kw)
  else:
    gk = _weight_grad_xla(x, g, k)
  return gx, gk.astype(k.dtype)


conv_same.defvjp(_fwd, _bwd)


def _is_same_stride1(lhs, rhs, window_strides, padding, lhs_dilation,
                     rhs_dilation, dimension_numbers, feature_group_count):
  kh, kw = rhs.shape[:2]
  if lhs.ndim != 4 or kh % 2 == 0 or kw % 2 == 0:
    return False
  if tuple(window_strides) != (1, 1) or feature_group_count != 1:
    return False
  if any(d is not None and tuple(d) != (1, 1)
         for d in (lhs_dilation, rhs_dilation)):
    return False
  if padding != "SAME" and (isinstance(padding, str) or [
      tuple(p) for p in padding] != [(kh // 2, kh // 2), (kw // 2, kw // 2)]):
    return False
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  return dimension_numbers is not None and lax.conv_dimension_numbers(
      lhs.shape, rhs.shape, dimension_numbers) == nhwc


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated` with the fast path for stride-1 'same'."""
  if kwargs.get("out_sharding") is None and _is_same_stride1(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
      dimension_numbers, feature_group_count):
    return conv_same(lhs, rhs)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision, **kwargs)
