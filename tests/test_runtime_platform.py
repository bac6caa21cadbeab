"""metavos.runtime.platform: CPU work-arounds on CPU only; accelerator
programs hold plain lax convolutions, rolled loops and vmapped items."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax import lax

from metavos import models
from metavos.models import conv
from metavos.runtime import platform


# The CPU path's weight gradient is a matmul of im2col patches (a
# dot_general, in a loop over row blocks when large); lax's is one more
# convolution.
BLOCKED, CONV = "dot_general", "conv_general_dilated"


def _grad_jaxpr(build_under: str, monkeypatch) -> str:
  """The parameter-gradient program of a tiny FCN built (and traced) with
  `build_under` as the default backend."""
  monkeypatch.setattr(jax, "default_backend", lambda: build_under)
  cfg = ml_collections.ConfigDict(dict(name="fcn", backbone="tiny",
                                       fpn_dim=8, norm_groups=4,
                                       pretrained=""))
  graphdef, params = nnx.split(models.build_model(cfg, nnx.Rngs(0)),
                               nnx.Param)
  x = jnp.zeros((1, 16, 16, 3))
  loss = lambda p: nnx.merge(graphdef, p)(x).sum()
  return str(jax.make_jaxpr(jax.grad(loss))(params))


def test_cpu_choices(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert platform.unroll(-1) is True and platform.items_per_call(-1) == 1
  assert platform.conv_general_dilated() is conv.conv_general_dilated
  assert platform.conv_same() is conv.conv_same


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_accelerator_choices_are_the_plain_ones(backend, monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert platform.unroll(-1) == 1 and platform.items_per_call(-1) == 0
  assert platform.conv_general_dilated() is lax.conv_general_dilated
  assert platform.conv_same() is conv.plain_conv_same


def test_set_values_win_on_every_platform():
  assert platform.unroll(0) is True and platform.unroll(4) == 4
  assert platform.items_per_call(0) == 0 and platform.items_per_call(3) == 3


def test_models_built_for_accelerators_hold_no_custom_convolution(
    monkeypatch):
  cpu, gpu = _grad_jaxpr("cpu", monkeypatch), _grad_jaxpr("gpu", monkeypatch)
  assert cpu.count(BLOCKED) > gpu.count(BLOCKED)
  assert gpu.count(CONV) > cpu.count(CONV)


def test_plain_conv_same_equals_the_cpu_one():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 9, 11, 3)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32)
  for stride in (1, 2):
    np.testing.assert_allclose(conv.plain_conv_same(x, k, stride),
                               conv.conv_same(x, k, stride), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"precision": lax.Precision.HIGHEST},
    {"preferred_element_type": jnp.float32}])
def test_precision_requests_go_to_lax(kwargs):
  x, k = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 2))
  call = lambda k, **kw: conv.conv_general_dilated(
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      **kw).sum()
  assert BLOCKED in str(jax.make_jaxpr(jax.grad(call))(k))
  plain = str(jax.make_jaxpr(jax.grad(lambda k: call(k, **kwargs)))(k))
  assert BLOCKED not in plain
  if "precision" in kwargs:
    assert "HIGHEST" in plain
