"""CPU time of one jitted augment call at 240x427x3, for both bilinear samplers.

Run: PYTHONPATH=. python benchmarks/bench_augment.py
"""
import time
import jax, jax.numpy as jnp, numpy as np
from metavos.finetune import augment as A


def gather_sample(image, ys, xs):
  """Hand-written bilinear sampler: four flat gathers of (H*W, C) rows."""
  h, w = image.shape[:2]
  ys = jnp.clip(ys, 0.0, h - 1.0); xs = jnp.clip(xs, 0.0, w - 1.0)
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  g = A._gather
  top = (1 - wx) * g(image, y0, x0) + wx * g(image, y0, x1)
  bot = (1 - wx) * g(image, y1, x0) + wx * g(image, y1, x1)
  return (1 - wy) * top + wy * bot


def build(sampler):
  def fn(rng, image, mask):
    original = A.bilinear_sample
    A.bilinear_sample = sampler  # Swapped only while tracing.
    try:
      return A.augment(rng, image, mask)
    finally:
      A.bilinear_sample = original
  return jax.jit(fn)


img = jax.random.normal(jax.random.key(0), (240, 427, 3))
mask = (img[..., 0] > 0).astype(jnp.float32)
fns = {'map_coordinates': build(A.bilinear_sample), 'gather': build(gather_sample)}
outs = [jax.block_until_ready(f(jax.random.key(3), img, mask)) for f in fns.values()]
np.testing.assert_allclose(outs[0][0], outs[1][0], atol=2e-4)
times = {n: [] for n in fns}
for rep in range(40):
  for n, f in fns.items():
    t = time.perf_counter()
    for i in range(20):
      out = f(jax.random.key(i), img, mask)
    jax.block_until_ready(out)
    times[n].append((time.perf_counter() - t) / 20 * 1e3)
for n, r in times.items():
  print(f'{n:16s} min {min(r):.3f} ms  median {np.median(r):.3f} ms per call')
