"""The RoI heads: box (object vs background, refinement) and mask (28x28)."""

from __future__ import annotations

import jax
from flax import nnx

from metavos.models import resnet
from metavos.runtime import platform


class BoxHead(nnx.Module):
  """Two fully connected layers over a RoI's pooled features, then one
  object-vs-background logit and class-agnostic box deltas.

  Kernels are `(in, out)`, so neuron-level learning rates have shape
  `(1, out)` like every other layer's `(..., out)`.
  """

  def __init__(self, dim: int, roi_size: int, hidden: int, *,
               rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(roi_size * roi_size * dim, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.score = nnx.Linear(hidden, 1, rngs=rngs,
                            kernel_init=nnx.initializers.normal(0.01))
    # Detectron2's 0.001: refinements start at zero.
    self.deltas = nnx.Linear(hidden, 4, rngs=rngs,
                             kernel_init=nnx.initializers.normal(0.001))

  def __call__(self, roi_features: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(R, S, S, C) -> (logits (R,), deltas (R, 4))."""
    x = roi_features.reshape(roi_features.shape[0], -1)
    x = jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x))))
    return self.score(x)[:, 0], self.deltas(x)


class MaskHead(nnx.Module):
  """3x3 conv + GroupNorm + ReLU blocks at S x S, a 2x transposed conv, and a
  1x1 conv to one mask logit per pixel of the 2S x 2S output."""

  def __init__(self, dim: int, num_convs: int, norm_groups: int, *,
               rngs: nnx.Rngs):
    self.convs = nnx.List([resnet.conv(dim, dim, 3, 1, rngs)
                           for _ in range(num_convs)])
    self.norms = nnx.List([resnet.group_norm(dim, norm_groups, rngs)
                           for _ in range(num_convs)])
    self.upsample = nnx.ConvTranspose(dim, dim, (2, 2), strides=(2, 2),
                                      rngs=rngs)
    self.logit = nnx.Conv(dim, 1, (1, 1), use_bias=True,
                          kernel_init=nnx.initializers.normal(0.01),
                          rngs=rngs,
                          conv_general_dilated=platform.conv_general_dilated())

  def __call__(self, roi_features: jax.Array) -> jax.Array:
    """(R, S, S, C) -> mask logits (R, 2S, 2S)."""
    x = roi_features
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.relu(norm(conv(x)))
    return self.logit(jax.nn.relu(self.upsample(x)))[..., 0]
