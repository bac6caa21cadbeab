"""The fast-gradient convolution equals lax's, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from metavos.models import conv

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, k, pad, stride=1):
  return lax.conv_general_dilated(x, k, (stride, stride), pad,
                                  dimension_numbers=DN)


@pytest.mark.parametrize("ksize,stride,pad,cin,cout", [
    (3, 1, None, 4, 5), (1, 1, None, 6, 2), (5, 1, None, 3, 3),
    # ResNet's strided convolutions: the 7x7 stem, a downsampling 3x3, the
    # 1x1 shortcut; 9x7 makes odd output sizes, stride 3 overlaps nothing.
    (7, 2, None, 3, 4), (3, 2, None, 4, 5), (1, 2, None, 6, 2),
    (3, 3, None, 2, 3),
    # The space-to-depth stem's 4x4 VALID convolution, asymmetric padding,
    # XLA's SAME at stride 2 (pads 0 before, 1 after).
    (4, 1, "VALID", 12, 4), (3, 1, ((0, 2), (1, 0)), 2, 3),
    (3, 2, "SAME", 3, 2)])
def test_values_and_gradients_match_lax(ksize, stride, pad, cin, cout):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, 9, 7, cin))
  k = jax.random.normal(kk, (ksize, ksize, cin, cout))
  pad = ((ksize // 2,) * 2,) * 2 if pad is None else pad
  dn = lax.conv_dimension_numbers(x.shape, k.shape, DN)
  ours = lambda x, k: conv.conv_general_dilated(x, k, (stride, stride), pad,
                                                dimension_numbers=dn)
  ref = lambda x, k: _lax(x, k, pad, stride)
  # The fast path is taken: its custom VJP shows in the jaxpr.
  assert "custom_vjp" in str(jax.make_jaxpr(ours)(x, k))
  np.testing.assert_allclose(ours(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
  w = jax.random.normal(kg, ref(x, k).shape)
  g_ours = jax.grad(lambda x, k: (ours(x, k) * w).sum(), (0, 1))(x, k)
  g_lax = jax.grad(lambda x, k: (ref(x, k) * w).sum(), (0, 1))(x, k)
  for a, b in zip(g_ours, g_lax):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_vmapped_over_kernels_and_second_order():
  """Per-object kernels (vmap) and a gradient of a gradient still match."""
  x = jax.random.normal(jax.random.key(1), (1, 6, 6, 3))
  ks = jax.random.normal(jax.random.key(2), (4, 3, 3, 3, 2))
  pad = ((1, 1), (1, 1))
  dn = lax.conv_dimension_numbers(x.shape, ks.shape[1:], DN)
  ours = lambda k: (conv.conv_general_dilated(
      x, k, (1, 1), pad, dimension_numbers=dn) ** 2).sum()
  ref = lambda k: (_lax(x, k, pad) ** 2).sum()
  np.testing.assert_allclose(jax.vmap(jax.grad(ours))(ks),
                             jax.vmap(jax.grad(ref))(ks), rtol=1e-4,
                             atol=1e-4)
  hv = lambda f: jax.grad(lambda k: jnp.vdot(jax.grad(f)(k), k))(ks[0])
  np.testing.assert_allclose(hv(ours), hv(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strides,padding,dilation,groups", [
    ((2, 1), ((1, 1), (1, 1)), None, 1),     # unequal strides
    ((1, 1), ((2, 2), (2, 2)), (2, 2), 1),   # dilated kernel
    ((1, 1), ((1, 1), (1, 1)), None, 2),     # grouped
    ((1, 1), ((-1, 1), (1, 1)), None, 1),    # negative padding (cropping)
])
def test_other_cases_fall_back_to_lax(strides, padding, dilation, groups):
  x = jax.random.normal(jax.random.key(3), (1, 8, 8, 2))
  k = jax.random.normal(jax.random.key(4), (3, 3, 2 // groups, 2))
  dn = lax.conv_dimension_numbers(x.shape, k.shape, DN)
  f = lambda x, k: conv.conv_general_dilated(
      x, k, strides, padding, rhs_dilation=dilation, dimension_numbers=dn,
      feature_group_count=groups)
  assert "custom_vjp" not in str(jax.make_jaxpr(f)(x, k))
  expected = lax.conv_general_dilated(x, k, strides, padding,
                                      rhs_dilation=dilation,
                                      dimension_numbers=DN,
                                      feature_group_count=groups)
  np.testing.assert_allclose(f(x, k), expected, rtol=1e-6)


@pytest.mark.parametrize("rows", [1, 2, 4, 9, None])
def test_blocked_weight_gradient_any_block_size(rows):
  """Row blocks that do not divide the height (zero-padded) change nothing."""
  x = jax.random.normal(jax.random.key(5), (2, 9, 7, 3))
  g = jax.random.normal(jax.random.key(6), (2, 9, 7, 4))
  k = jnp.zeros((3, 5, 3, 4))
  expected = jax.vjp(lambda k: _lax(x, k, ((1, 1), (2, 2))), k)[1](g)[0]
  got = jax.jit(conv.weight_grad_blocked, static_argnums=(2, 3, 4))(
      x, g, 3, 5, rows)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("rows", [1, 2, 3, 5, None])
def test_blocked_strided_weight_gradient_any_block_size(rows):
  """Stride 2, 7x7: the last block reads past the padded image (zeros)."""
  x = jax.random.normal(jax.random.key(7), (2, 10, 9, 3))
  k = jnp.zeros((7, 7, 3, 4))
  pad = ((3, 3), (3, 3))
  g = jax.random.normal(jax.random.key(8), (2, 5, 5, 4))
  expected = jax.vjp(lambda k: _lax(x, k, pad, 2), k)[1](g)[0]
  got = jax.jit(conv.weight_grad_blocked, static_argnums=(2, 3, 4, 5))(
      x, g, 7, 7, rows, 2)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_block_rows_bounded_by_height_and_bytes():
  assert conv.block_rows((3, 240, 427, 32), (3, 3)) == 1   # 1.5 MB per row
  assert conv.block_rows((1, 5, 4, 2), (3, 3)) == 5        # whole image
  rows = conv.block_rows((3, 240, 427, 3), (3, 3))
  assert 1 < rows < 240
  assert rows * 3 * 427 * 9 * 3 * 4 <= conv._BLOCK_BYTES


def test_cpu_gradient_uses_the_blocked_loop():
  """On CPU the weight gradient is the row-block loop, not XLA's."""
  x = jnp.ones((1, 8, 2048, 16))          # 1.2 MB of patches per row
  k = jnp.ones((3, 3, 16, 16))
  assert conv.block_rows(x.shape, k.shape) == 1
  hlo = jax.jit(jax.grad(lambda k: conv.conv_same(x, k).sum())).lower(
      k).compile().as_text()
  assert "while" in hlo
