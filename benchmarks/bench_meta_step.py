r"""Speed of one first-order e-OSVOS meta-step: rolled scan, unrolled, PyTorch.

The workload of the e-OSVOS core issue: 5 inner SGD steps with neuron-level
rates, 3 augmented support copies, 1 query frame, 240x427, one task, on a
5-layer GroupNorm conv net (and, with --model=small, metavos' CPU model).
Reports compile and step seconds, tasks/s and achieved GFLOP/s (XLA cost
analysis / measured time) against the machine's dense matmul GFLOP/s
measured in the same process, and the same steps in PyTorch eager when torch
is importable (it is not a metavos dependency).

  python benchmarks/bench_meta_step.py
  python benchmarks/bench_meta_step.py --model=small --height=120 --width=214
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from benchmarks import common
from metavos import models
from metavos.models import conv
from metavos.meta import meta_step


class ConvNet5(nnx.Module):
  """5 conv layers (3x3, GroupNorm, ReLU), the last one to 1 logit."""

  def __init__(self, width: int, rngs: nnx.Rngs, fast_conv: bool):
    chans = [3, width, width, width, width]
    impl = (conv.conv_general_dilated if fast_conv
            else jax.lax.conv_general_dilated)
    self.convs = nnx.List([nnx.Conv(a, b, (3, 3), rngs=rngs,
                                    conv_general_dilated=impl)
                           for a, b in zip(chans[:-1], chans[1:])])
    self.norms = nnx.List([nnx.GroupNorm(width, num_groups=8, rngs=rngs)
                           for _ in chans[1:]])
    self.head = nnx.Conv(width, 1, (3, 3), rngs=rngs,
                         conv_general_dilated=impl)

  def __call__(self, x):
    for layer, norm in zip(self.convs, self.norms):
      x = jax.nn.relu(norm(layer(x)))
    return self.head(x)


def build(model: str, width: int, fast_conv: bool = True):
  if model == "convnet5":
    m = ConvNet5(width, nnx.Rngs(0), fast_conv)
    graphdef, params = nnx.split(m, nnx.Param)
    return params, lambda p, x: nnx.merge(graphdef, p)(x)
  cfg = ml_collections.ConfigDict(dict(name="fcn", backbone=model, fpn_dim=32,
                                       norm_groups=8, pretrained=""))
  graphdef, params = nnx.split(models.build_model(cfg, nnx.Rngs(0)), nnx.Param)
  return params, models.make_apply_fn(graphdef)


def task_batch(h: int, w: int, tasks: int):
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:h, :w]
  mask = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 4) ** 2).astype(
      np.float32)
  return {
      "support_image": rng.random((tasks, h, w, 3), np.float32),
      "support_mask": np.broadcast_to(mask, (tasks, h, w)).copy(),
      "support_valid": np.ones((tasks, h, w), bool),
      "query_image": rng.random((tasks, 1, h, w, 3), np.float32),
      "query_mask": np.broadcast_to(mask, (tasks, 1, h, w)).copy(),
      "query_valid": np.ones((tasks, 1, h, w), bool),
  }


def compile_step(params, apply_fn, batch, unroll, steps, copies, loss,
                 tasks_per_call=0):
  """The jitted first-order meta-step, compiled; and its compile seconds."""
  cfg = meta_step.MetaConfig(
      num_inner_steps=steps, support_copies=copies, loss=loss,
      augment=(("flip", True), ("max_rotation_deg", 30.0),
               ("scale_range", (0.75, 1.25))), unroll=unroll,
      tasks_per_call=tasks_per_call)
  mp = meta_step.init_meta_params(params, "neuron", 1e-3)
  fn = jax.jit(lambda m, b, r: meta_step.loss_and_grads(
      m, b, r, model=models.dense_model(apply_fn), cfg=cfg))
  t0 = time.perf_counter()
  compiled = fn.lower(mp, batch, jax.random.key(0)).compile()
  return compiled, (mp, batch, jax.random.key(0)), time.perf_counter() - t0


def bench_jax(params, apply_fn, batch, unroll, steps, copies, loss,
              repeats, tasks_per_call=0):
  compiled, args, compile_s = compile_step(params, apply_fn, batch, unroll,
                                           steps, copies, loss, tasks_per_call)
  step_s = common.time_fn(compiled, *args, repeats=repeats, warmup=1)
  return {"compile_s": compile_s, "step_s": step_s,
          "xla_counted_gflop": common.compiled_flops(compiled) / 1e9}


def bench_torch(width, h, w, steps, copies, repeats=3):
  """The same first-order meta-step in PyTorch eager (support copies are
  flips/identity of the frame: no rotation/scale warp, slightly less work)."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  torch.set_num_threads(max(1, torch.get_num_threads()))
  layers = []
  chans = [3, width, width, width, width]
  for a, b in zip(chans[:-1], chans[1:]):
    layers += [torch.nn.Conv2d(a, b, 3, padding=1), torch.nn.GroupNorm(8, b),
               torch.nn.ReLU()]
  layers.append(torch.nn.Conv2d(width, 1, 3, padding=1))
  net = torch.nn.Sequential(*layers)
  init = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
  lrs = [torch.full((p.shape[0],) + (1,) * (p.dim() - 1), 1e-3,
                    requires_grad=True) for p in init]
  x = torch.rand(1, 3, h, w)
  y = (torch.rand(1, 1, h, w) > 0.5).float()
  xs = torch.cat([x, x.flip(-1), x][:copies])
  ys = torch.cat([y, y.flip(-1), y][:copies])
  bce = torch.nn.functional.binary_cross_entropy_with_logits

  def forward(params, inp):
    it = iter(params)
    out = inp
    for layer in net:
      if isinstance(layer, torch.nn.Conv2d):
        out = torch.nn.functional.conv2d(out, next(it), next(it), padding=1)
      elif isinstance(layer, torch.nn.GroupNorm):
        out = torch.nn.functional.group_norm(out, 8, next(it), next(it))
      else:
        out = torch.relu(out)
    return out

  def meta_step_torch():
    theta = list(init)
    for _ in range(steps):
      g = torch.autograd.grad(bce(forward(theta, xs), ys), theta)
      theta = [p - lr * gi.detach() for p, lr, gi in zip(theta, lrs, g)]
    q = bce(forward(theta, x), y)
    return torch.autograd.grad(q, init + lrs)

  meta_step_torch()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    meta_step_torch()
    times.append(time.perf_counter() - t0)
  return {"step_s": sorted(times)[len(times) // 2],
          "torch": torch.__version__, "threads": torch.get_num_threads()}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--model", default="convnet5")
  ap.add_argument("--width", type=int, default=32)
  ap.add_argument("--height", type=int, default=240)
  ap.add_argument("--image_width", dest="w", type=int, default=427)
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--copies", type=int, default=3)
  ap.add_argument("--tasks", type=int, default=1)
  ap.add_argument("--loss", default="bce")
  ap.add_argument("--tasks_per_call", type=int, default=0,
                  help="0: vmap the tasks; N: N tasks at a time, one chunk after another")
  ap.add_argument("--variants",
                  default="unrolled,unrolled-laxconv,torch,rolled")
  args = ap.parse_args()
  print("machine:", common.machine_line())
  peak = common.matmul_gflops()
  print(f"dense f32 matmul peak (measured): {peak:.1f} GFLOP/s")
  built = {fast: build(args.model, args.width, fast) for fast in (True, False)}
  batch = task_batch(args.height, args.w, args.tasks)
  # The work of one meta-step: XLA's FLOP count of the loop-free program
  # (unrolled scan, lax convolutions). It counts a loop body once, so the
  # rolled scan's and the CPU weight gradient's (a loop over row blocks)
  # own counts are too low; every variant does this same arithmetic.
  work, _, _ = compile_step(*built[False], batch, True, args.steps,
                            args.copies, args.loss)
  gflop = common.compiled_flops(work) / 1e9
  print(f"work per meta-step: {gflop:.1f} GFLOP")
  results = {}
  for variant in args.variants.split(","):
    if variant == "torch":
      if args.model != "convnet5":
        continue
      try:
        results[variant] = bench_torch(args.width, args.height, args.w,
                                       args.steps, args.copies)
        results[variant]["gflops_per_s"] = gflop / results[variant]["step_s"]
        print(variant, json.dumps(results[variant]), flush=True)
      except ImportError:
        print("torch not importable: skipping the PyTorch baseline")
      continue
    # "<rolled|unrolled>[-laxconv]": scan unrolling, and lax's convolution
    # gradient instead of metavos.models.conv's (convnet5 only).
    loop, _, laxconv = variant.partition("-")
    unroll = {"rolled": 1, "unrolled": True}[loop]
    params, apply_fn = built[not laxconv]
    # The rolled scan is ~30x slower on XLA:CPU: time it once.
    r = bench_jax(params, apply_fn, batch, unroll, args.steps, args.copies,
                  args.loss, repeats=1 if loop == "rolled" else 3,
                  tasks_per_call=args.tasks_per_call)
    r["tasks_per_s"] = args.tasks / r["step_s"]
    r["gflops_per_s"] = gflop / r["step_s"]
    r["fraction_of_matmul_peak"] = r["gflops_per_s"] / peak
    results[variant] = r
    print(variant, json.dumps(r), flush=True)
  print(json.dumps({"args": vars(args), "matmul_gflops": peak,
                    "gflop_per_meta_step": gflop,
                    "results": results}, indent=2))


if __name__ == "__main__":
  main()
