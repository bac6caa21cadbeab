r"""Peak memory of one e-OSVOS meta-step against the inner steps T.

For first order, full second order, and second order with `jax.remat` on
each inner step: XLA's compiled memory analysis of `meta_step.loss_and_grads`
(arguments + outputs + temporaries, the buffers live at the peak of the
program) for T = 1, 2, 5, 10, 20. The inner loop is a rolled `lax.scan`
(unroll=1), the accelerator default; the same workload as
benchmarks/bench_meta_step.py (5-layer GroupNorm net, 3 augmented support
copies, 1 query frame, 240x427, one task). Nothing is run: only compiled.

  python -m benchmarks.bench_meta_memory
  python -m benchmarks.bench_meta_memory --steps=1,5,10 --height=120 --width=214
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from benchmarks import bench_meta_step, common
from metavos import models
from metavos.meta import meta_step

MODES = {"first order": (True, False), "second order": (False, False),
         "second order + remat": (False, True)}


def peak_bytes(params, apply_fn, batch, steps: int, first_order: bool,
               remat: bool) -> dict:
  cfg = meta_step.MetaConfig(
      num_inner_steps=steps, support_copies=3, first_order=first_order,
      remat=remat, unroll=1,
      augment=(("flip", True), ("max_rotation_deg", 30.0),
               ("scale_range", (0.75, 1.25))))
  mp = meta_step.init_meta_params(params, "neuron", 1e-3)
  fn = jax.jit(lambda m, b, r: meta_step.loss_and_grads(
      m, b, r, model=models.dense_model(apply_fn), cfg=cfg))
  t0 = time.perf_counter()
  mem = fn.lower(mp, batch, jax.random.key(0)).compile().memory_analysis()
  return {"temp_mb": mem.temp_size_in_bytes / 2**20,
          "peak_mb": (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                      + mem.output_size_in_bytes) / 2**20,
          "compile_s": time.perf_counter() - t0}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", default="1,2,5,10,20")
  parser.add_argument("--width", type=int, default=32)
  parser.add_argument("--height", type=int, default=240)
  parser.add_argument("--image_width", type=int, default=427)
  args = parser.parse_args()
  params, apply_fn = bench_meta_step.build("convnet5", args.width)
  batch = bench_meta_step.task_batch(args.height, args.image_width, 1)
  print(common.machine_line())
  print("| T | " + " | ".join(f"{m} peak MB (temp MB)" for m in MODES) + " |")
  print("|---|" + "---|" * len(MODES))
  rows = []
  for t in [int(s) for s in args.steps.split(",")]:
    cells = {m: peak_bytes(params, apply_fn, batch, t, *flags)
             for m, flags in MODES.items()}
    rows.append({"T": t, **cells})
    print(f"| {t} | " + " | ".join(
        f"{c['peak_mb']:.0f} ({c['temp_mb']:.0f})" for c in cells.values())
          + " |", flush=True)
  print(json.dumps(rows))


if __name__ == "__main__":
  main()
