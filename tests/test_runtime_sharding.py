"""Shardings: one device in-process, eight fake CPU devices in a subprocess."""

import textwrap

import jax
import numpy as np
import pytest

from metavos.runtime import sharding

from _fake_devices import run_on_fake_devices


def test_per_process_batch_size_and_error():
  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  assert sharding.per_process_batch_size(6, mesh) == 6 // jax.process_count()
  with pytest.raises(ValueError, match=r"0 is not divisible .* e\.g\. 1 or 2"):
    sharding.per_process_batch_size(0, mesh)


def test_make_mesh_rejects_impossible_device_counts():
  with pytest.raises(ValueError, match="asked for 0 devices"):
    sharding.make_mesh(0)
  with pytest.raises(ValueError, match=r"pass a number in \[1, "):
    sharding.make_mesh(jax.device_count() + 1)


def test_shard_batch_single_device_round_trip():
  mesh = sharding.make_mesh(1)
  batch = {"image": np.arange(24.0).reshape(4, 3, 2), "id": np.arange(4)}
  global_batch = sharding.shard_batch(batch, mesh)
  assert global_batch["image"].sharding == sharding.data_sharded(mesh)
  np.testing.assert_array_equal(global_batch["image"], batch["image"])
  with pytest.raises(ValueError, match=r"\['scalar'\] has shape \(\)"):
    sharding.shard_batch({"scalar": np.float32(1.0)}, mesh)


_EIGHT_DEVICES = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from metavos.runtime import sharding
    assert jax.device_count() == 8, jax.devices()

    mesh = sharding.make_mesh()
    assert mesh.shape == {"data": 8} and mesh.axis_names == ("data",)
    assert sharding.per_process_batch_size(16) == 16
    try:
      sharding.per_process_batch_size(12)
      raise AssertionError("12 examples on 8 devices must be refused")
    except ValueError as e:
      assert "Global batch size 12 is not divisible by the 8 devices" in str(e)
      assert "multiple of 8, e.g. 8 or 16" in str(e), e

    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(16, 5)).astype(np.float32),
             "y": rng.normal(size=(16,)).astype(np.float32)}
    params = {"w": rng.normal(size=(5,)).astype(np.float32),
              "b": np.float32(0.3)}

    def loss(p, b):
      return jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2)

    def grad_on(mesh):
      step = jax.jit(jax.value_and_grad(loss),
                     in_shardings=(sharding.replicated(mesh),
                                   sharding.data_sharded(mesh)),
                     out_shardings=sharding.replicated(mesh))
      global_batch = sharding.shard_batch(batch, mesh)
      assert global_batch["x"].shape == (16, 5)
      assert global_batch["x"].sharding == sharding.data_sharded(mesh)
      shard_shapes = {s.data.shape
                      for s in global_batch["x"].addressable_shards}
      assert shard_shapes == {(16 // mesh.size, 5)}, shard_shapes
      replicated = sharding.replicate(params, mesh)
      assert replicated["w"].sharding.is_fully_replicated
      assert len(replicated["w"].sharding.device_set) == mesh.size
      value, grads = step(replicated, global_batch)
      assert len(grads["w"].sharding.device_set) == mesh.size
      return jax.device_get((value, grads))

    (v8, g8), (v1, g1) = grad_on(mesh), grad_on(sharding.make_mesh(1))
    # Relative tolerances from float32 reassociation: the loss and each
    # gradient sum 16 rows, in 8 partial sums of 2 on 8 devices; the worst
    # case of reordering a 16-term sum is 16 eps (1.9e-6) of its terms'
    # scale. Measured on the 2-core AMD box (printed): loss identical,
    # gradients 2.0e-7 relative (50x under rtol 1e-5).
    np.testing.assert_allclose(v8, v1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    worst = max(float(np.abs(a - b).max() / np.abs(b).max())
                for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1)))
    print(f"gradients: {worst:.1e} relative (rtol 1e-5)")

    try:
      sharding.shard_batch({"x": np.zeros((12, 2))}, mesh)
      raise AssertionError("12 rows on 8 devices must be refused")
    except ValueError as e:
      assert "['x'] has shape (12, 2)" in str(e) and "8 devices" in str(e), e
    print("OK")
""")


def test_eight_devices_match_one_device():
  out = run_on_fake_devices(_EIGHT_DEVICES, timeout=120)
  print(next(line for line in out.splitlines() if line.startswith("gradients:")))
