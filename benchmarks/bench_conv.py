"""One convolution layer: lax's gradients vs metavos.models.conv's.

  python -m benchmarks.bench_conv [--batch 3 --height 240 --width 427 --channels 32]
  python -m benchmarks.bench_conv --kernel 7 --stride 2 --in_channels 3   # a ResNet stem

Times the forward pass and forward + both gradients, and the weight-gradient
alternatives tried (lax's, one matmul per kernel tap over the whole image,
whole-image im2col + one matmul, and metavos' im2col in row blocks of
several sizes), so the choice in metavos/models/conv.py can be re-checked
on another machine.
"""

import argparse

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import common
from metavos.models import conv

DN = ("NHWC", "HWIO", "NHWC")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=3)
  ap.add_argument("--height", type=int, default=240)
  ap.add_argument("--width", type=int, default=427)
  ap.add_argument("--channels", type=int, default=32,
                  help="output channels (and input channels by default)")
  ap.add_argument("--in_channels", type=int, default=0)
  ap.add_argument("--kernel", type=int, default=3)
  ap.add_argument("--stride", type=int, default=1)
  a = ap.parse_args()
  b, h, w, c = a.batch, a.height, a.width, a.channels
  cin, kn, s = a.in_channels or c, a.kernel, a.stride
  x = jax.random.normal(jax.random.key(0), (b, h, w, cin))
  k = 0.1 * jax.random.normal(jax.random.key(1), (kn, kn, cin, c))
  lax_conv = lambda x, k: lax.conv_general_dilated(
      x, k, (s, s), ((kn // 2,) * 2,) * 2, dimension_numbers=DN)
  ours = lambda x, k: conv.conv_same(x, k, s)
  _, ho, wo, _ = jax.eval_shape(lax_conv, x, k).shape
  g = jax.random.normal(jax.random.key(2), (b, ho, wo, c))
  gflop = 2 * b * ho * wo * kn * kn * cin * c / 1e9

  def both_grads(f):
    return jax.jit(jax.grad(lambda x, k: (f(x, k) * g).sum(), (0, 1)))

  def wgrad_per_tap(x, g):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    g2 = g.reshape(-1, c)
    return jnp.stack([jnp.stack([xp[:, i:i + h, j:j + w, :].reshape(-1, c).T
                                 @ g2 for j in range(3)]) for i in range(3)])

  def wgrad_concat(x, g):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(3)
                            for j in range(3)], -1).reshape(-1, 9 * c)
    return (cols.T @ g.reshape(-1, c)).reshape(3, 3, c, c)

  print("machine:", common.machine_line())
  print(f"matmul peak: {common.matmul_gflops():.1f} GFLOP/s; layer: "
        f"{b}x{h}x{w}x{cin}->{c}, {kn}x{kn} stride {s}, {gflop:.2f} GFLOP "
        "forward")
  fwd = common.time_fn(jax.jit(lax_conv), x, k, repeats=5)
  print(f"forward (lax)                      {fwd * 1e3:8.1f} ms "
        f"({gflop / fwd:.0f} GFLOP/s)")
  for name, f in [("lax.conv", lax_conv), ("metavos conv", ours)]:
    t = common.time_fn(both_grads(f), x, k, repeats=5)
    print(f"forward + both gradients, {name:12s} {t * 1e3:8.1f} ms "
          f"({3 * gflop / t:.0f} GFLOP/s)")
  t = common.time_fn(jax.jit(
      lambda x, g: jax.vjp(lambda x: lax_conv(x, k), x)[1](g)[0]), x, g,
                      repeats=5)
  print(f"input gradient only, lax               {t * 1e3:8.1f} ms")
  if s > 1:
    t = common.time_fn(jax.jit(
        lambda x, g: jax.vjp(lambda x: ours(x, k), x)[1](g)[0]), x, g,
                        repeats=5)
    print(f"input gradient only, metavos           {t * 1e3:8.1f} ms")
  wg_lax = jax.jit(lambda x, g: jax.vjp(lambda k: lax_conv(x, k), k)[1](g)[0])
  wg_ours = jax.jit(lambda x, g: jax.vjp(lambda k: ours(x, k), k)[1](g)[0])
  rows = conv.block_rows((b, ho, wo, cin), (kn, kn))
  variants = [("lax", wg_lax), (f"metavos ({rows} rows/block)", wg_ours)]
  if (kn, s, cin) == (3, 1, c):
    variants += [("per-tap matmuls", jax.jit(wgrad_per_tap)),
                 ("im2col concat", jax.jit(wgrad_concat))]
  for r in sorted({1, 2, 4, 8} - {rows}):
    variants.append((f"row blocks of {r}", jax.jit(
        lambda x, g, r=r: conv.weight_grad_blocked(x, g, kn, kn, r, s))))
  for name, f in variants:
    t = common.time_fn(f, x, g, repeats=5)
    print(f"weight gradient only, {name:24s} {t * 1e3:8.1f} ms")


if __name__ == "__main__":
  main()
