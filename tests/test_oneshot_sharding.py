"""One-shot training's loss gradient (forward-backward chain, static clips,
random intermediate frame) on 8 (fake CPU) devices equals the 1-device
result. The trainer jits its update with the same shardings
(`train_loop.jit_update`)."""

import textwrap

from _fake_devices import run_on_fake_devices

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_disable_most_optimizations", True)
    from configs import oneshot as oneshot_config
    from metavos.memory import static_clips
    from metavos.methods import memory_networks, oneshot, stcn
    from metavos.runtime import sharding
    assert jax.device_count() == 8, jax.devices()
    config = oneshot_config.get_config("smoke")
    config.memory.key_backbone = config.memory.value_backbone = "tiny"
    config.memory.key_dim = config.memory.value_dim = 8
    config.memory.decoder_dim = 8
    fns, params = memory_networks.build_network(config)
    rng = np.random.default_rng(0)
    n, length, k, h, w = 8, 3, 2, 32, 32
    masks = np.zeros((n, length, k, h, w), np.float32)
    for i in range(n):
      y, x = rng.integers(2, 16, 2)
      masks[i, 0, 0, y:y + 12, x:x + 12] = 1
      masks[i, 0, 1, 28 - y:32 - y, 20:30] = 1
    batch = {"frames": rng.random((n, length, h, w, 3), np.float32),
             "masks": masks, "valid": np.ones((n, length, h, w), bool),
             "present": np.ones((n, k), bool)}
    key = jax.random.key(7)

    static_cfg = static_clips.StaticClipConfig.from_config(
        config.oneshot.static)

    def loss(p, b, key):  # the trainer's loss, static clips on
      static_key, loss_key = jax.random.split(key)
      b = oneshot.with_static_clips(b, static_key, True, static_cfg)
      return oneshot.clip_loss(p, b, 0.5, loss_key, fns=fns,
                               variant="two_step", unroll=True, remat=False)

    def grads_on(num_devices):
      mesh = sharding.make_mesh(num_devices)
      fn = jax.jit(jax.value_and_grad(loss),
                   in_shardings=(sharding.replicated(mesh),
                                 sharding.data_sharded(mesh),
                                 sharding.replicated(mesh)),
                   out_shardings=sharding.replicated(mesh))
      b = sharding.shard_batch(batch, mesh)
      assert len(b["frames"].sharding.device_set) == num_devices
      return jax.device_get(fn(sharding.replicate(params, mesh), b, key))

    (l8, g8), (l1, g1) = grads_on(8), grads_on(1)
    print("LOSS", float(l8), float(l1))
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(g1))
    assert scale > 1e-2, scale  # the gradient is live
    worst = max(float(np.abs(a - b).max())
                for a, b in zip(jax.tree.leaves(g8), jax.tree.leaves(g1)))
    print("WORST", worst / scale, "LOSS_REL", abs(float(l8) - float(l1)) /
          abs(float(l1)), "SCALE", scale)
    # Tolerances relative to the quantity's scale, from float32
    # reassociation: the loss and every gradient sum ~25k terms (8 clips x 3
    # frames x 32x32 pixels), ~sqrt(25k) eps = 1.9e-5 per reduction when the
    # 8 devices' partial sums are added in another order, compounded over
    # the chain's few dependent reductions: 1e-4. A sharding bug (a device's
    # clips dropped or counted twice, a sum for a mean) is off by 1/8 or
    # more. Measured on an AMD EPYC: 1.5e-6 (gradients, margin 66x) and
    # 1.4e-7 (loss, margin 700x).
    assert abs(float(l8) - float(l1)) < 1e-4 * abs(float(l1))
    assert worst < 1e-4 * scale, (worst, scale)
""")


def test_oneshot_gradient_same_on_8_and_1_devices():
  out = run_on_fake_devices(SCRIPT, marker="WORST")
  # The measured margins (`pytest -s tests/test_oneshot_sharding.py`).
  print(next(l for l in out.splitlines() if l.startswith("WORST")))
