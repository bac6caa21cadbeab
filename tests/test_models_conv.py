"""The fast-gradient convolution equals lax's, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from metavos.models import conv

DN = ("NHWC", "HWIO", "NHWC")


def _lax(x, k, pad):
  return lax.conv_general_dilated(x, k, (1, 1), pad, dimension_numbers=DN)


@pytest.mark.parametrize("ksize,cin,cout", [(3, 4, 5), (1, 6, 2), (5, 3, 3)])
def test_values_and_gradients_match_lax(ksize, cin, cout):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, 9, 7, cin))
  k = jax.random.normal(kk, (ksize, ksize, cin, cout))
  pad = ((ksize // 2,) * 2,) * 2
  dn = lax.conv_dimension_numbers(x.shape, k.shape, DN)
  ours = lambda x, k: conv.conv_general_dilated(x, k, (1, 1), pad,
                                                dimension_numbers=dn)
  np.testing.assert_allclose(ours(x, k), _lax(x, k, pad), rtol=1e-5,
                             atol=1e-5)
  w = jax.random.normal(kg, (2, 9, 7, cout))
  g_ours = jax.grad(lambda x, k: (ours(x, k) * w).sum(), (0, 1))(x, k)
  g_lax = jax.grad(lambda x, k: (_lax(x, k, pad) * w).sum(), (0, 1))(x, k)
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


def test_other_cases_fall_back_to_lax():
  x = jax.random.normal(jax.random.key(3), (1, 8, 8, 2))
  k = jax.random.normal(jax.random.key(4), (3, 3, 2, 2))
  dn = lax.conv_dimension_numbers(x.shape, k.shape, DN)
  strided = conv.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)),
                                      dimension_numbers=dn)
  expected = lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)),
                                      dimension_numbers=DN)
  np.testing.assert_allclose(strided, expected, rtol=1e-6)


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
