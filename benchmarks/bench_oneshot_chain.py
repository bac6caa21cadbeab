r"""Speed of one one-shot training step: unrolled vs rolled lax.scan vs remat.

The trainer's own jitted update (metavos.methods.oneshot.make_update: the
forward-backward chain, its gradient and the AdamW step) at the
configs/oneshot.py:davis16_cpu size (4 clips of T + 1 = 4 frames at 96x176,
small/tiny memory network), with random frames and masks, all settings in
one process. Reports per setting the compile seconds, the median step
seconds and XLA's compiled temp-buffer bytes (memory_analysis), which is
what remat trades speed for.

XLA:CPU runs a weight-gradient convolution inside a rolled `lax.scan` 10 to
100 times slower than unrolled (which is why config.unroll=-1 unrolls on CPU).

  python benchmarks/bench_oneshot_chain.py
  python benchmarks/bench_oneshot_chain.py --variant=one_step --repeats=5
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from configs import oneshot as oneshot_config
from metavos.methods import memory_networks, oneshot
from metavos.runtime import sharding

# name -> (config.unroll, config.memory.remat)
SETTINGS = {"unrolled": (0, False), "rolled": (1, False),
            "rolled_remat": (1, True), "unrolled_remat": (0, True)}


def fake_batch(config) -> dict:
  """A batch shaped like ClipSampler's for `config` (random content)."""
  b, t = config.train.batch_size, config.oneshot.num_forward + 1
  h, w = config.train.image_size
  k = config.clip.max_objects
  rng = np.random.default_rng(0)
  masks = np.zeros((b, t, k, h, w), np.float32)
  masks[:, :, 0, h // 4:h // 2, w // 4:w // 2] = 1.0
  return {"frames": rng.random((b, t, h, w, 3), np.float32), "masks": masks,
          "valid": np.ones((b, t, h, w), bool),
          "present": np.ones((b, k), bool)}


def bench(config, setting: str, repeats: int) -> dict:
  config.unroll, config.memory.remat = SETTINGS[setting]
  mesh = sharding.make_mesh(config.num_devices or None)
  fns, params = memory_networks.build_network(config)
  update = oneshot.make_update(config, fns, mesh, 1.0)
  state = sharding.replicate({
      "params": params, "opt_state": memory_networks.make_optimizer(config).init(params),
      "step": jnp.zeros((), jnp.int32)}, mesh)
  batch = sharding.shard_batch(fake_batch(config), mesh)
  key = jax.random.key(0)
  t0 = time.perf_counter()
  compiled = update.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  times = []
  for i in range(repeats + 1):  # The first call is a warm-up.
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  return {"setting": setting, "variant": config.oneshot.variant,
          "compile_s": round(compile_s, 2),
          "step_s": round(float(np.median(times[1:])), 3),
          "temp_mb": round(mem.temp_size_in_bytes / 2**20, 1)
          if mem is not None else None,
          "loss": float(metrics["loss"])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--variant", default="t_step")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--settings", default=",".join(SETTINGS))
  args = parser.parse_args()
  print(common.machine_line(), flush=True)
  for setting in args.settings.split(","):
    config = oneshot_config.get_config("davis16_cpu")
    config.oneshot.variant = args.variant
    print(json.dumps(bench(config, setting, args.repeats)), flush=True)


if __name__ == "__main__":
  main()
