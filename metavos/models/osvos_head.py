"""OSVOS-style head: one side output per backbone stage, fused by a 1x1 conv.

Follows Caelles et al. (2017): each stage's features pass a small 3x3
"preparation" convolution (16 channels); these prepared features are
upsampled to the input size, concatenated and fused by a 1x1 convolution into
the output logit. Each side also has a 1x1 convolution to its own logit,
returned for deep supervision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from metavos.models import fpn
from metavos.models import resnet
from metavos.runtime import platform


class SideOutput(nnx.Module):
  """A 3x3 "preparation" conv + ReLU, then a 1x1 conv to one logit channel.

  The logit conv starts at zero, so every side (and the fusion) starts at
  logit 0 whatever the backbone's feature scale. A pretrained VGG16 has no
  normalisation layers: its prepared features average 7-35 on a DAVIS frame,
  and a variance-preserving init gave side logits with a standard deviation
  of 14-86 (`benchmarks/osvos_head_init_scale.py`), saturating the loss, so
  the parent spent its first steps undoing the initialisation (OSVOS starts its new layers near
  zero for the same reason: normal with std 0.001).
  """

  def __init__(self, in_ch: int, side_dim: int, *, rngs: nnx.Rngs):
    """Args: in_ch: feature channels; side_dim: prep width."""
    self.prep = resnet.conv(in_ch, side_dim, 3, 1, rngs, use_bias=True)
    self.logit = _zero_conv(side_dim, rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns `(prepared features, logit)` at the input's resolution."""
    prepared = jax.nn.relu(self.prep(x))
    return prepared, self.logit(prepared)


def _zero_conv(in_ch: int, rngs: nnx.Rngs) -> nnx.Conv:
  """A 1x1 conv to one channel that starts at zero (see `SideOutput`)."""
  return nnx.Conv(in_ch, 1, (1, 1), use_bias=True,
                  kernel_init=nnx.initializers.zeros, rngs=rngs,
                  conv_general_dilated=platform.conv_general_dilated())


class OSVOSSegmenter(nnx.Module):
  """Backbone + side outputs at C2..C5 + a learned 1x1 fusion of the sides'
  prepared features (OSVOS' fusion: the 16-channel features of every side,
  upsampled and concatenated, not their one-channel logits)."""

  def __init__(self, backbone: resnet.ResNet, side_dim: int = 16, *,
               rngs: nnx.Rngs):
    """Builds the head on top of `backbone`.

    Args:
      backbone: feature extractor returning C2..C5 (owned by this module).
      side_dim: width of each side's 3x3 prep conv (OSVOS uses 16).
      rngs: initialisation randomness.
    """
    if side_dim < 1:
      raise ValueError(f"config.model.fpn_dim (the OSVOS side width) must be "
                       f">= 1, got {side_dim}.")
    self.backbone = backbone
    self.sides = nnx.List([SideOutput(c, side_dim, rngs=rngs)
                           for c in backbone.out_channels])
    self.fuse = _zero_conv(side_dim * len(backbone.out_channels), rngs)

  def forward_with_aux(
      self, images: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """Returns `(fused_logits, [side logits of C2..C5])`, all `(B, H, W, 1)`."""
    return self.decode(self.backbone(images), images.shape[-3:-1])

  def decode(self, features: list[jax.Array], size: tuple[int, int]
             ) -> tuple[jax.Array, list[jax.Array]]:
    """The head on the backbone's features, with outputs of `size`."""
    prepared, side_logits = [], []
    for side, feature in zip(self.sides, features):
      p, logit = side(feature)
      prepared.append(fpn.resize_to(p, *size))
      side_logits.append(fpn.resize_to(logit, *size))
    fused = self.fuse(jnp.concatenate(prepared, axis=-1))
    return fused, side_logits

  def __call__(self, images: jax.Array) -> jax.Array:
    """Maps `(B, H, W, 3)` images in [0, 1] to `(B, H, W, 1)` fused logits."""
    return self.forward_with_aux(images)[0]
