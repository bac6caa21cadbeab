"""Learning-rate trees: shapes per mode, clamping, broadcasting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.finetune import lrs as lrs_lib

PARAMS = {"conv": {"kernel": jnp.ones((3, 3, 4, 8)), "bias": jnp.ones((8,))},
          "norm": {"scale": jnp.ones((8,))}}


def test_neuron_mode_has_one_rate_per_output_channel():
  lrs = lrs_lib.init_lrs(PARAMS, "neuron", 1e-3)
  assert lrs["conv"]["kernel"].shape == (1, 1, 1, 8)
  assert lrs["conv"]["bias"].shape == (8,)
  assert lrs["norm"]["scale"].shape == (8,)
  np.testing.assert_allclose(lrs["conv"]["kernel"], 1e-3)


@pytest.mark.parametrize("mode,kernel_shape", [
    ("tensor", ()), ("parameter", (3, 3, 4, 8)), ("global", None)])
def test_other_modes(mode, kernel_shape):
  lrs = lrs_lib.init_lrs(PARAMS, mode, 0.5)
  if mode == "global":
    assert lrs.shape == ()
    expanded = lrs_lib.expand_lrs(lrs, PARAMS)
    assert jax.tree.structure(expanded) == jax.tree.structure(PARAMS)
  else:
    assert lrs["conv"]["kernel"].shape == kernel_shape


def test_rates_broadcast_per_neuron():
  lrs = lrs_lib.init_lrs(PARAMS, "neuron", 1.0)
  lrs["conv"]["kernel"] = lrs["conv"]["kernel"].at[..., 3].set(0.0)
  step = jax.tree.map(lambda p, lr: p - lr * p, PARAMS, lrs)
  # Neuron 3's weights are frozen, every other neuron's go to zero.
  np.testing.assert_allclose(step["conv"]["kernel"][..., 3], 1.0)
  np.testing.assert_allclose(step["conv"]["kernel"][..., 2], 0.0)


def test_jitter_and_clamp():
  lrs = lrs_lib.init_lrs(PARAMS, "neuron", 1e-3, jitter=0.5,
                         rng=jax.random.key(0))
  k = np.asarray(lrs["conv"]["kernel"])
  assert k.min() >= 0.5e-3 and k.max() <= 1.5e-3 and k.std() > 0
  neg = jax.tree.map(lambda x: -x, lrs)
  assert all(float(x.max()) == 0.0 for x in jax.tree.leaves(
      lrs_lib.clamp_lrs(neg)))
  with pytest.raises(ValueError, match="rng"):
    lrs_lib.init_lrs(PARAMS, "neuron", 1e-3, jitter=0.5)
  with pytest.raises(ValueError, match="neuron"):
    lrs_lib.init_lrs(PARAMS, "per-layer")
