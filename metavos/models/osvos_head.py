"""OSVOS-style head: one side output per backbone stage, fused by a 1x1 conv.

Follows Caelles et al. (2017): each stage's features pass a small 3x3
"preparation" convolution, a 1x1 convolution to one logit, and are upsampled to
the input size; a 1x1 convolution over the stacked side logits fuses them.
The side logits are returned for deep supervision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from metavos.models import fpn
from metavos.models import resnet
from metavos.runtime import platform


class SideOutput(nnx.Module):
  """Optional 3x3 conv + ReLU, then a 1x1 conv to one logit channel."""

  def __init__(self, in_ch: int, side_dim: int, *, rngs: nnx.Rngs):
    """Args: in_ch: feature channels; side_dim: prep width (0: no prep conv)."""
    self.prep = (resnet.conv(in_ch, side_dim, 3, 1, rngs, use_bias=True)
                 if side_dim else None)
    self.logit = resnet.conv(side_dim or in_ch, 1, 1, 1, rngs, use_bias=True)

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.prep is not None:
      x = jax.nn.relu(self.prep(x))
    return self.logit(x)


class OSVOSSegmenter(nnx.Module):
  """Backbone + side outputs at C2..C5 + a learned 1x1 fusion."""

  def __init__(self, backbone: resnet.ResNet, side_dim: int = 16, *,
               rngs: nnx.Rngs):
    """Builds the head on top of `backbone`.

    Args:
      backbone: feature extractor returning C2..C5 (owned by this module).
      side_dim: width of each side's 3x3 prep conv (OSVOS uses 16); 0 reads
        the backbone features directly with the 1x1 logit conv.
      rngs: initialisation randomness.
    """
    self.backbone = backbone
    self.sides = nnx.List([SideOutput(c, side_dim, rngs=rngs)
                           for c in backbone.out_channels])
    n = len(backbone.out_channels)
    # Start the fusion as the mean of the side outputs: the fused logits are
    # then sensible from step one, and every side gets an equal gradient.
    self.fuse = nnx.Conv(n, 1, (1, 1), use_bias=True,
                         kernel_init=nnx.initializers.constant(1.0 / n),
                         rngs=rngs,
                         conv_general_dilated=platform.conv_general_dilated())

  def forward_with_aux(
      self, images: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """Returns `(fused_logits, [side logits of C2..C5])`, all `(B, H, W, 1)`."""
    return self.decode(self.backbone(images), images.shape[-3:-1])

  def decode(self, features: list[jax.Array], size: tuple[int, int]
             ) -> tuple[jax.Array, list[jax.Array]]:
    """The head on the backbone's features, with outputs of `size`."""
    side_logits = [fpn.resize_to(side(feature), *size)
                   for side, feature in zip(self.sides, features)]
    fused = self.fuse(jnp.concatenate(side_logits, axis=-1))
    return fused, side_logits

  def __call__(self, images: jax.Array) -> jax.Array:
    """Maps `(B, H, W, 3)` images in [0, 1] to `(B, H, W, 1)` fused logits."""
    return self.forward_with_aux(images)[0]
