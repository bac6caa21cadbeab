"""VGG16 trunk (13 3x3 convolutions), the base network of OSVOS and HED.

Parameter tree (the order of every published VGG16 layout):

  block1[0..1], block2[0..1], block3[0..2], block4[0..2], block5[0..2]
  each a 3x3 'same' convolution with bias, followed by ReLU; a 2x2 max-pool
  of stride 2 comes before blocks 2-5.

`__call__` returns the outputs of blocks 2..5 (conv2_2, conv3_3, conv4_3,
conv5_3; strides 2, 4, 8, 16), the four features every metavos head reads
from a backbone (as ResNet's C2..C5); `stages` returns all five (conv1_2 as
well), for HED's contour side outputs. Pooling pads at the end like Keras'
'same' pooling, so odd sizes round up (240 -> 120 -> 60 -> 30 -> 15).

The input normalisation is part of the network: the weights were trained
with one and only one. `input_norm` is "caffe_bgr" (BGR, 0-255, minus the
Caffe mean: HED, Keras' VGG16, OSVOS) or "imagenet_rgb" (RGB in [0, 1],
torchvision's mean/std). Callers pass images as RGB in [0, 1], like every
other metavos model; which normalisation a model uses is decided by the
weights it loads (`metavos.models.vgg_weights`), recorded in
`config.model.input_norm` and checked when a checkpoint is restored.
"""

from __future__ import annotations

import jax
from flax import nnx

from metavos.models import normalization
from metavos.runtime import platform

# (output channels of each convolution) per block.
VGG16_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

_conv_init = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


def max_pool_same(x: jax.Array) -> jax.Array:
  """2x2 stride-2 max-pool that keeps a last odd row/column (ceil size)."""
  h, w = x.shape[-3:-1]
  pad = ((0, h % 2), (0, w % 2))
  return nnx.max_pool(x, (2, 2), strides=(2, 2), padding=pad)


def _conv(in_ch: int, out_ch: int, rngs: nnx.Rngs) -> nnx.Conv:
  return nnx.Conv(in_ch, out_ch, (3, 3), padding=((1, 1), (1, 1)),
                  use_bias=True, kernel_init=_conv_init, rngs=rngs,
                  conv_general_dilated=platform.conv_general_dilated())


class VGG16(nnx.Module):
  """VGG16 without its classifier; see the module docstring."""

  def __init__(self, input_norm: str = "caffe_bgr", *, rngs: nnx.Rngs):
    """Args: input_norm: one of `INPUT_NORMS`; rngs: initialisation."""
    self.input_norm = normalization.check(input_norm)
    in_ch = 3
    blocks = []
    for widths in VGG16_BLOCKS:
      convs = []
      for width in widths:
        convs.append(_conv(in_ch, width, rngs))
        in_ch = width
      blocks.append(nnx.List(convs))
    self.block1, self.block2, self.block3, self.block4, self.block5 = blocks

  @property
  def out_channels(self) -> tuple[int, ...]:
    """Channels of the four returned features (conv2_2 .. conv5_3)."""
    return tuple(widths[-1] for widths in VGG16_BLOCKS[1:])

  @property
  def blocks(self) -> tuple[nnx.List, ...]:
    return (self.block1, self.block2, self.block3, self.block4, self.block5)

  # The staged interface every backbone has (`segmenter.run_backbone`): the
  # network is `num_stages` stages run in order; `__call__` returns the
  # outputs of `feature_stages`; stage i owns the parameters `stage_params(i)`.
  num_stages = 5
  feature_stages = (1, 2, 3, 4)

  @staticmethod
  def stage_params(i: int) -> tuple[str, ...]:
    return (f"block{i + 1}",)

  def run_stages(self, x: jax.Array, start: int, stop: int
                 ) -> list[jax.Array]:
    """Outputs of stages `start .. stop - 1`.

    Args:
      x: RGB images in [0, 1] when `start == 0`, else stage `start - 1`'s
        output.
    """
    outputs = []
    for i in range(start, stop):
      x = (normalization.normalize(x, self.input_norm) if i == 0
           else max_pool_same(x))
      for conv in self.blocks[i]:
        x = jax.nn.relu(conv(x))
      outputs.append(x)
    return outputs

  def stages(self, images: jax.Array) -> list[jax.Array]:
    """All five block outputs (conv1_2 .. conv5_3), NHWC.

    Args:
      images: `(B, H, W, 3)` RGB in [0, 1].
    """
    return self.run_stages(images, 0, self.num_stages)

  def __call__(self, images: jax.Array) -> list[jax.Array]:
    """conv2_2, conv3_3, conv4_3, conv5_3 (strides 2, 4, 8, 16)."""
    return self.stages(images)[1:]
