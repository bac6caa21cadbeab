"""Convolution with a faster weight gradient on XLA:CPU.

XLA:CPU computes the weight gradient of a convolution 10x slower than the
forward convolution (measured: 3x3, 32->32 channels, 3x240x427: forward
46 ms, weight gradient 636 ms). The weight gradient is one matrix product
of the im2col patches of the (zero-padded) input with the output gradient.
On CPU this module computes it a few output rows at a time: each block's
patches (about `_BLOCK_BYTES`) are built and multiplied while they are still
in cache, so the kh*kw times larger patch matrix of the whole image never
goes through memory. Measured on the same layer: 125 ms against 282 ms for
one matmul per kernel tap over the whole image (`benchmarks/bench_conv.py`).
The same holds with strides (a ResNet's downsampling and 1x1 shortcut
convolutions, its stem): the patches are strided slices. Models take this
path on CPU only (metavos.runtime.platform decides); on accelerators they
hold plain `lax` convolutions.

`conv_general_dilated` has lax's signature, so it plugs into
`nnx.Conv(..., conv_general_dilated=conv_general_dilated)`. It takes this
path for 4-D NHWC x HWIO convolutions with equal strides, non-negative
padding, no dilation, one feature group and default precision (no
`precision` / `preferred_element_type` asked for); every other call goes to
`lax.conv_general_dilated` unchanged, so those settings are always honoured.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], tuple[int, int]]


def _plain_conv(x: jax.Array, k: jax.Array, stride: int,
                padding: Padding) -> jax.Array:
  return lax.conv_general_dilated(x, k, (stride, stride), padding,
                                  dimension_numbers=_NHWC)


def plain_conv_same(x: jax.Array, k: jax.Array, stride: int = 1,
                    padding: Padding | None = None) -> jax.Array:
  """`conv_same` through `lax` alone (XLA's own gradients)."""
  return _plain_conv(x, k, int(stride),
                     _symmetric(k.shape) if padding is None else padding)


def _symmetric(k_shape: tuple[int, ...]) -> Padding:
  kh, kw = k_shape[:2]
  return ((kh // 2, kh // 2), (kw // 2, kw // 2))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, k: jax.Array, stride: int,
          padding: Padding) -> jax.Array:
  return _plain_conv(x, k, stride, padding)


def conv_same(x: jax.Array, k: jax.Array, stride: int = 1,
              padding: Padding | None = None) -> jax.Array:
  """NHWC x HWIO convolution with the fast weight gradient.

  Args:
    x: `(B, H, W, Cin)` input.
    k: `(kh, kw, Cin, Cout)` kernel.
    stride: the same stride along both axes.
    padding: `((top, bottom), (left, right))` zeros; default `kernel // 2`
      on every side (torchvision's; with an odd kernel and stride 1 the
      output keeps the input's size).
  """
  padding = _symmetric(k.shape) if padding is None else tuple(
      tuple(int(v) for v in p) for p in padding)
  return _conv(x, k, int(stride), padding)


def _fwd(x, k, stride, padding):
  return _plain_conv(x, k, stride, padding), (x, k)


# Bytes of one row block's im2col patches in the CPU weight gradient: the
# block sizes measured fastest for 3x3 layers of 3..128 channels at 60x107
# to 240x427 (benchmarks/bench_conv.py) build 0.3 to 3 MB of patches.
_BLOCK_BYTES = 2 << 20


def block_rows(x_shape: tuple[int, ...], k_shape: tuple[int, ...],
               itemsize: int = 4) -> int:
  """Output rows per block of the CPU weight gradient (at least 1).

  x_shape: `(batch, output rows, output columns, input channels)`.
  """
  b, h, w, cin = x_shape
  kh, kw = k_shape[:2]
  row_bytes = b * w * kh * kw * cin * itemsize
  return int(max(1, min(h, _BLOCK_BYTES // row_bytes)))


def weight_grad_blocked(x: jax.Array, g: jax.Array, kh: int, kw: int,
                        rows: int | None = None, stride: int = 1,
                        padding: Padding | None = None) -> jax.Array:
  """d/dk of `conv_same(x, k, stride, padding)` given the output gradient.

  For each block of `rows` output rows: the (b * rows * wo, kh * kw * cin)
  patches of the input times the (b * rows * wo, cout) output gradient `g`,
  summed over blocks in a `fori_loop`.
  """
  b, h, w, cin = x.shape
  _, ho, wo, cout = g.shape
  s = stride
  (top, bottom), (left, right) = padding or _symmetric((kh, kw))
  if rows is None:
    rows = block_rows((b, ho, wo, cin), (kh, kw), x.dtype.itemsize)
  blocks = -(-ho // rows)
  extra = blocks * rows - ho      # zero output rows so every block is full
  span = s * (rows - 1) + kh      # padded input rows one block reads
  # Rows the last block reads past the padded input: zeros too.
  extra_in = max(0, s * (blocks - 1) * rows + span - (h + top + bottom))
  xp = jnp.pad(x, ((0, 0), (top, bottom + extra_in), (left, right), (0, 0)))
  gp = jnp.pad(g, ((0, 0), (0, extra), (0, 0), (0, 0)))

  def block(r):
    xs = lax.dynamic_slice_in_dim(xp, r * rows * s, span, axis=1)
    gs = lax.dynamic_slice_in_dim(gp, r * rows, rows, axis=1)
    cols = jnp.concatenate(
        [xs[:, i:i + s * (rows - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
         for i in range(kh) for j in range(kw)], axis=-1)
    return cols.reshape(-1, kh * kw * cin).T @ gs.reshape(-1, cout)

  # The sum starts from block 0 (not zeros) so that inside shard_map it has
  # the same device-varying type as every block's product. One block (small
  # frames) needs no loop: an empty one still costs a traced, batched scan.
  gk = block(0)
  if blocks > 1:
    gk = lax.fori_loop(1, blocks, lambda r, acc: acc + block(r), gk)
  return gk.reshape(kh, kw, cin, cout)


def _bwd(stride, padding, res, g):
  x, k = res
  kh, kw = k.shape[:2]
  if stride == 1 and padding == _symmetric(k.shape):
    # d/dx: correlation of g with the flipped kernel, in/out channels swapped.
    gx = _plain_conv(g, jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2), 1, padding)
  else:
    gx = jax.vjp(lambda x: _plain_conv(x, k, stride, padding), x)[1](g)[0]
  gk = weight_grad_blocked(x, g, kh, kw, stride=stride, padding=padding)
  return gx, gk.astype(k.dtype)


_conv.defvjp(_fwd, _bwd)


def _fast_path(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
               dimension_numbers, feature_group_count
               ) -> tuple[int, Padding] | None:
  """(stride, explicit padding) when `conv_same` computes the call, else None."""
  if lhs.ndim != 4 or feature_group_count != 1 or dimension_numbers is None:
    return None
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                dimension_numbers) != nhwc:
    return None
  sh, sw = tuple(window_strides)
  if sh != sw or any(d is not None and tuple(d) != (1, 1)
                     for d in (lhs_dilation, rhs_dilation)):
    return None
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2],
                                  window_strides, padding)
  pads = tuple(tuple(int(v) for v in p) for p in padding)
  if min(min(p) for p in pads) < 0:
    return None
  return sh, pads


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated`, through `conv_same` where it applies (see
  the module docstring); a call asking for a `precision`, a
  `preferred_element_type` or an `out_sharding` goes to lax."""
  plain = precision is not None or any(
      kwargs.get(k) is not None
      for k in ("out_sharding", "preferred_element_type"))
  fast = None if plain else _fast_path(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
      dimension_numbers, feature_group_count)
  if fast is not None:
    return conv_same(lhs, rhs, *fast)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, precision=precision, **kwargs)
