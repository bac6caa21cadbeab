"""ResNet backbones with GroupNorm, laid out like torchvision's ResNet.

The parameter tree mirrors torchvision's names so that a state dict maps onto it
with two renames (`bnK` -> `normK`, `weight` -> `kernel`/`scale`):

  conv1, norm1                      stem (torchvision: conv1, bn1)
  layer{1..4}[i].conv{1,2,3}        block convolutions
  layer{1..4}[i].norm{1,2,3}        block norms (torchvision: bn{1,2,3})
  layer{1..4}[i].downsample[0|1]    shortcut conv / norm (same indices)

GroupNorm instead of BatchNorm keeps the model free of mutable state: the
parameters are the whole state, and one image's output never depends on the
other images in the batch (so a batch of one frame is as good as any other).
Convolutions are NHWC with `(kh, kw, in, out)` kernels and use torchvision's
explicit paddings, so pretrained weights see the same receptive fields.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from metavos.models import normalization
from metavos.runtime import platform


# torchvision initialises convolutions with He-normal on fan-out.
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
  """Architecture of one ResNet variant.

  Attributes:
    block: "basic" (two 3x3 convs) or "bottleneck" (1x1, 3x3, 1x1; x4 wide).
    widths: inner width of the blocks in layer1..layer4.
    depths: number of blocks in layer1..layer4.
    space_to_depth_stem: compute the 7x7 stride-2 stem as a 4x4 conv on 2x2
      space-to-depth input (same parameters, same outputs). On CPU this makes
      the stem's weight gradient 2-6x faster for narrow stems (8-16 output
      channels at 240x427), and slower for 32+ channels, so only the narrow
      variants use it.
  """
  block: str
  widths: tuple[int, int, int, int]
  depths: tuple[int, int, int, int]
  space_to_depth_stem: bool = False

  @property
  def expansion(self) -> int:
    return 4 if self.block == "bottleneck" else 1

  @property
  def out_channels(self) -> tuple[int, ...]:
    """Channels of the C2..C5 features."""
    return tuple(w * self.expansion for w in self.widths)


RESNET_SPECS: dict[str, ResNetSpec] = {
    # For unit tests: compiles and runs in well under a second on a CPU.
    "tiny": ResNetSpec("basic", (8, 16, 32, 64), (1, 1, 1, 1), True),
    # For the CPU recipes: trainable from scratch within a couple of hours.
    "small": ResNetSpec("basic", (16, 32, 64, 128), (1, 1, 1, 1), True),
    "resnet18": ResNetSpec("basic", (64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet34": ResNetSpec("basic", (64, 128, 256, 512), (3, 4, 6, 3)),
    "resnet50": ResNetSpec("bottleneck", (64, 128, 256, 512), (3, 4, 6, 3)),
}


def group_count(channels: int, requested: int) -> int:
  """Number of GroupNorm groups used for `channels` channels.

  The rule: the largest divisor of `channels` that is at most `requested`.
  So 32 groups stay 32 for any multiple of 32 (all torchvision widths), and a
  narrow layer gets fewer groups (8 channels with 32 requested -> 8 groups of
  one channel each, i.e. instance norm), never a count that does not divide.

  Args:
    channels: number of channels to normalise.
    requested: the configured number of groups (>= 1).

  Returns:
    A divisor of `channels` in [1, requested].
  """
  if requested < 1:
    raise ValueError(f"norm_groups must be >= 1, got {requested}.")
  for groups in range(min(requested, channels), 0, -1):
    if channels % groups == 0:
      return groups
  return 1


def group_norm(channels: int, groups: int, rngs: nnx.Rngs,
               zero_scale: bool = False) -> nnx.GroupNorm:
  """GroupNorm over `channels` with `group_count(channels, groups)` groups."""
  return nnx.GroupNorm(
      channels, num_groups=group_count(channels, groups), epsilon=1e-5,
      scale_init=(nnx.initializers.zeros if zero_scale
                  else nnx.initializers.ones),
      rngs=rngs)


def conv(in_ch: int, out_ch: int, kernel: int, stride: int, rngs: nnx.Rngs,
         use_bias: bool = False) -> nnx.Conv:
  """Convolution with torchvision's symmetric padding of `kernel // 2`."""
  pad = kernel // 2
  return nnx.Conv(in_ch, out_ch, (kernel, kernel), strides=(stride, stride),
                  padding=((pad, pad), (pad, pad)), use_bias=use_bias,
                  kernel_init=_conv_init, rngs=rngs,
                  conv_general_dilated=platform.conv_general_dilated())


class SpaceToDepthStem(nnx.Module):
  """torchvision's stem conv (7x7, stride 2, padding 3, no bias), rearranged.

  The kernel is zero-padded to 8x8 and split into 2x2 phases, and the input
  into 2x2 pixel blocks, which turns the strided conv into a 4x4 stride-1 conv
  over 4x the channels. The parameter keeps the plain conv's `(7, 7, in, out)`
  layout, so pretrained weights and per-neuron learning rates are unaffected.
  """

  def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
    self.kernel = nnx.Param(_conv_init(rngs.params(), (7, 7, in_ch, out_ch)))

  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    oh, ow = (h + 1) // 2, (w + 1) // 2  # ceil, as the padded plain conv
    # Input rows 2i-3 .. 2i+4 feed output row i (7 taps and the zero tap), so
    # pad 3 in front and to 2 * (oh + 3) rows in all; likewise for columns.
    x = jnp.pad(x, ((0, 0), (3, 2 * oh + 3 - h), (3, 2 * ow + 3 - w), (0, 0)))
    x = x.reshape(b, oh + 3, 2, ow + 3, 2, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, oh + 3, ow + 3, 4 * c)
    k = jnp.pad(self.kernel[...], ((0, 1), (0, 1), (0, 0), (0, 0)))
    k = k.reshape(4, 2, 4, 2, c, -1).transpose(0, 2, 1, 3, 4, 5)
    k = k.reshape(4, 4, 4 * c, -1)
    return platform.conv_same()(x, k, 1, ((0, 0), (0, 0)))


class BasicBlock(nnx.Module):
  """Two 3x3 convolutions with a residual shortcut (ResNet-18/34)."""

  def __init__(self, in_ch: int, width: int, stride: int, groups: int,
               zero_init_residual: bool, *, rngs: nnx.Rngs):
    self.conv1 = conv(in_ch, width, 3, stride, rngs)
    self.norm1 = group_norm(width, groups, rngs)
    self.conv2 = conv(width, width, 3, 1, rngs)
    self.norm2 = group_norm(width, groups, rngs, zero_init_residual)
    self.downsample = _shortcut(in_ch, width, stride, groups, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.nn.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    return jax.nn.relu(y + _apply_shortcut(self.downsample, x))


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3 (strided, as torchvision v1.5), 1x1 expand x4."""

  def __init__(self, in_ch: int, width: int, stride: int, groups: int,
               zero_init_residual: bool, *, rngs: nnx.Rngs):
    out_ch = width * 4
    self.conv1 = conv(in_ch, width, 1, 1, rngs)
    self.norm1 = group_norm(width, groups, rngs)
    self.conv2 = conv(width, width, 3, stride, rngs)
    self.norm2 = group_norm(width, groups, rngs)
    self.conv3 = conv(width, out_ch, 1, 1, rngs)
    self.norm3 = group_norm(out_ch, groups, rngs, zero_init_residual)
    self.downsample = _shortcut(in_ch, out_ch, stride, groups, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.nn.relu(self.norm1(self.conv1(x)))
    y = jax.nn.relu(self.norm2(self.conv2(y)))
    y = self.norm3(self.conv3(y))
    return jax.nn.relu(y + _apply_shortcut(self.downsample, x))


def _shortcut(in_ch: int, out_ch: int, stride: int, groups: int,
              rngs: nnx.Rngs) -> nnx.List | None:
  """Projection shortcut when the shape changes, else None (identity).

  A list (not named fields) so that indices 0/1 match torchvision's
  `downsample.0` (conv) and `downsample.1` (norm).
  """
  if stride == 1 and in_ch == out_ch:
    return None
  return nnx.List([conv(in_ch, out_ch, 1, stride, rngs),
                   group_norm(out_ch, groups, rngs)])


def _apply_shortcut(downsample: nnx.List | None, x: jax.Array) -> jax.Array:
  if downsample is None:
    return x
  return downsample[1](downsample[0](x))


class ResNet(nnx.Module):
  """ResNet feature extractor returning C2..C5 (strides 4, 8, 16, 32).

  Takes images in [0, 1] and normalises them with the ImageNet statistics
  itself, so torchvision weights apply unchanged. No classifier (`fc`).
  """

  def __init__(self, spec: ResNetSpec, norm_groups: int = 32,
               zero_init_residual: bool = True, *, rngs: nnx.Rngs):
    """Builds the backbone.

    Args:
      spec: the architecture (see `RESNET_SPECS`).
      norm_groups: requested GroupNorm groups; see `group_count` for how it is
        clamped for narrow layers.
      zero_init_residual: start each residual branch's last norm at scale 0,
        so every block begins as the identity; this keeps activations bounded
        when training from scratch and is overwritten by pretrained weights.
      rngs: initialisation randomness (not kept in the module).
    """
    self.spec = spec
    self.input_norm = "imagenet_rgb"  # torchvision's weights were trained so
    block_cls = Bottleneck if spec.block == "bottleneck" else BasicBlock
    if spec.space_to_depth_stem:
      self.conv1 = SpaceToDepthStem(3, spec.widths[0], rngs=rngs)
    else:
      self.conv1 = nnx.Conv(3, spec.widths[0], (7, 7), strides=(2, 2),
                            padding=((3, 3), (3, 3)), use_bias=False,
                            kernel_init=_conv_init, rngs=rngs)
    self.norm1 = group_norm(spec.widths[0], norm_groups, rngs)
    in_ch = spec.widths[0]
    stages = []
    for i, (width, depth) in enumerate(zip(spec.widths, spec.depths)):
      blocks = []
      for j in range(depth):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(block_cls(in_ch, width, stride, norm_groups,
                                zero_init_residual, rngs=rngs))
        in_ch = width * spec.expansion
      stages.append(nnx.List(blocks))
    self.layer1, self.layer2, self.layer3, self.layer4 = stages

  @property
  def out_channels(self) -> tuple[int, ...]:
    """Channels of the returned C2..C5 features."""
    return self.spec.out_channels

  def __call__(self, images: jax.Array) -> list[jax.Array]:
    """Computes multi-scale features.

    Args:
      images: `(B, H, W, 3)` RGB in [0, 1].

    Returns:
      `[C2, C3, C4, C5]`, NHWC, at strides 4, 8, 16, 32 (sizes rounded up, as
      in torchvision: `ceil(H / 4)`, then halved rounding up at each stage).
    """
    return self.run_stages(images, 0, self.num_stages)

  # The staged interface every backbone has (see `vgg.VGG16`): stage 0 is
  # the stem and layer1 (C2), stage i > 0 is layer{i+1}.
  num_stages = 4
  feature_stages = (0, 1, 2, 3)

  @staticmethod
  def stage_params(i: int) -> tuple[str, ...]:
    return ("conv1", "norm1", "layer1") if i == 0 else (f"layer{i + 1}",)

  def run_stages(self, x: jax.Array, start: int, stop: int
                 ) -> list[jax.Array]:
    """Outputs of stages `start .. stop - 1`; `x` is the images in [0, 1]
    when `start == 0`, else stage `start - 1`'s output."""
    outputs = []
    for i in range(start, stop):
      if i == 0:
        x = normalization.normalize(x, self.input_norm)
        x = jax.nn.relu(self.norm1(self.conv1(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
      for block in (self.layer1, self.layer2, self.layer3, self.layer4)[i]:
        x = block(x)
      outputs.append(x)
    return outputs


def build_resnet(name: str, norm_groups: int = 32, *,
                 rngs: nnx.Rngs) -> ResNet:
  """Builds the named backbone (a key of `RESNET_SPECS`)."""
  if name not in RESNET_SPECS:
    raise ValueError(f"Unknown backbone {name!r}; options: "
                     f"{sorted(RESNET_SPECS)}.")
  return ResNet(RESNET_SPECS[name], norm_groups, rngs=rngs)
