r"""Speed of one VGG16 fine-tuning step: metavos (JAX) against PyTorch eager.

The workload of the real-backbone issue: forward and backward of VGG16's 13
convolutions and a 1x1 head on 2 frames of 240x427, then an SGD update of
every parameter (what OSVOS' test-time fine-tuning of all layers does each
step). Reports seconds per step, GFLOP/s (XLA's count of the fp32 program
over the measured time) and its share of the dense matmul peak measured in
the same process, in float32 and bfloat16 (activations and weights cast to
bf16, parameters and the update in fp32), and the same steps in PyTorch eager
when torch is importable (it is not a metavos dependency).

  python -m benchmarks.bench_vgg_step [--variants=jax,jax-bf16,torch,torch-bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from metavos.models import vgg


def build_jax(dtype):
  """VGG16 (random weights: speed only) + a 1x1 head on conv5_3, and the
  jitted SGD step; compute in `dtype`, parameters and update in fp32."""
  trunk = vgg.VGG16("caffe_bgr", rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(trunk, nnx.Param)
  head = {"w": jnp.full((1, 1, 512, 1), 1e-3, jnp.float32),
          "b": jnp.zeros((1,), jnp.float32)}

  def loss(p, images, target):
    cast = lambda t: jax.tree.map(lambda x: x.astype(dtype), t)
    top = nnx.merge(graphdef, cast(p["trunk"])).stages(images.astype(dtype))[-1]
    h = cast(p["head"])
    logits = jax.lax.conv_general_dilated(
        top, h["w"], (1, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + h["b"]
    logits = logits[..., 0].astype(jnp.float32)
    return jnp.mean(jnp.maximum(logits, 0) - logits * target
                    + jnp.log1p(jnp.exp(-jnp.abs(logits))))

  @jax.jit
  def step(p, images, target):
    value, grads = jax.value_and_grad(loss)(p, images, target)
    return jax.tree.map(lambda x, g: x - 1e-3 * g, p, grads), value

  return {"trunk": params, "head": head}, step


def bench_jax(dtype, images, target, repeats):
  params, step = build_jax(dtype)
  t0 = time.perf_counter()
  compiled = step.lower(params, images, target).compile()
  compile_s = time.perf_counter() - t0
  step_s = common.time_fn(compiled, params, images, target, repeats=repeats)
  return {"compile_s": compile_s, "step_s": step_s,
          "xla_counted_gflop": common.compiled_flops(compiled) / 1e9}


def bench_torch(dtype_name, images, target, repeats, threads):
  """The same step in PyTorch eager (NCHW; bf16 through CPU autocast)."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  torch.set_num_threads(threads)
  chans = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
           (256, 256), (256, 512), (512, 512), (512, 512), (512, 512),
           (512, 512), (512, 512)]
  pool_after = {1, 3, 6, 9}  # 2x2 max-pool before blocks 2-5
  convs = [torch.nn.Conv2d(a, b, 3, padding=1) for a, b in chans]
  head = torch.nn.Conv2d(512, 1, 1)
  params = [p for m in convs + [head] for p in m.parameters()]
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  y = torch.from_numpy(np.ascontiguousarray(target))[:, None]
  bce = torch.nn.functional.binary_cross_entropy_with_logits

  def forward(inp):
    out = inp
    for i, c in enumerate(convs):
      out = torch.relu(c(out))
      if i in pool_after:
        out = torch.nn.functional.max_pool2d(out, 2, ceil_mode=True)
    return head(out)

  def step():
    with torch.autocast("cpu", dtype=torch.bfloat16,
                        enabled=dtype_name == "bf16"):
      logits = forward(x)
    loss = bce(logits.float(), y)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
      for p, g in zip(params, grads):
        p.sub_(1e-3 * g)

  return {"step_s": common.time_fn(step, repeats=repeats),
          "torch": torch.__version__, "threads": torch.get_num_threads()}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--height", type=int, default=240)
  ap.add_argument("--width", type=int, default=427)
  ap.add_argument("--batch", type=int, default=2)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--threads", type=int, default=0,
                  help="PyTorch threads; 0 = the cores JAX sees")
  ap.add_argument("--variants", default="jax,jax-bf16,torch,torch-bf16")
  a = ap.parse_args()
  print("machine:", common.machine_line())
  peak = common.matmul_gflops()
  print(f"dense f32 matmul peak (measured): {peak:.1f} GFLOP/s")
  rng = np.random.default_rng(0)
  images = rng.random((a.batch, a.height, a.width, 3), np.float32)
  # The head's logits are at stride 16 (metavos pools with 'same' padding,
  # PyTorch with ceil_mode: both round up).
  target = (rng.random((a.batch, -(-a.height // 16), -(-a.width // 16)))
            > 0.5).astype(np.float32)
  gflop = None
  results = {}
  for variant in a.variants.split(","):
    lib, _, prec = variant.partition("-")
    if lib == "jax":
      r = bench_jax(jnp.bfloat16 if prec == "bf16" else jnp.float32,
                    images, target, a.repeats)
      if not prec:
        gflop = r["xla_counted_gflop"]
    else:
      try:
        r = bench_torch(prec or "f32", images, target, a.repeats,
                        a.threads or len(os.sched_getaffinity(0)))
      except ImportError:
        print("torch not importable: skipping", variant)
        continue
    if gflop:
      r["gflops_per_s"] = gflop / r["step_s"]
      r["fraction_of_f32_matmul_peak"] = r["gflops_per_s"] / peak
    results[variant] = r
    print(variant, json.dumps(r), flush=True)
  for prec in ("", "-bf16"):
    if f"jax{prec}" in results and f"torch{prec}" in results:
      print(f"metavos / PyTorch speed{prec or ' (fp32)'}: "
            f"{results['torch' + prec]['step_s'] / results['jax' + prec]['step_s']:.2f}x")
  print(json.dumps({"args": vars(a), "matmul_gflops": peak,
                    "gflop_per_step": gflop, "results": results}, indent=2))


if __name__ == "__main__":
  main()
