"""Mask R-CNN for one object class (the tracked object vs background).

ResNet-GroupNorm backbone + FPN (the same modules as the FCN segmenter), a
region proposal network over anchors of every pyramid level, a box head and
a 28x28 mask head on RoIAlign features. Everything has static shapes: a
fixed number of proposals per image, NMS with padding, and RoI features for
every RoI, so the model is jitted, differentiated through the e-OSVOS inner
loop and vmapped over objects like the dense segmenters.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from metavos.models import fpn as fpn_lib
from metavos.models import resnet
from metavos.models.maskrcnn import anchors as anchors_lib
from metavos.models.maskrcnn import heads
from metavos.models.maskrcnn import rpn as rpn_lib
from metavos.runtime import config_fields

# Strides of the pyramid levels P2..P5 (the backbone's C2..C5).
STRIDES = (4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class MaskRCNNSpec:
  """Static settings of the detector (config.model.maskrcnn; see there)."""
  anchor_scales: tuple[float, ...] = (4.0, 8.0)
  anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
  pre_nms_topk: int = 256
  num_proposals: int = 32
  nms_iou: float = 0.7
  roi_sampling_ratio: int = 2
  box_roi_size: int = 7
  mask_size: int = 28
  head_dim: int = 128
  mask_convs: int = 2
  box_propagation: bool = True
  box_jitter: float = 0.1
  num_propagated: int = 8

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict) -> "MaskRCNNSpec":
    spec = config_fields.from_block(cls, cfg, "config.model.maskrcnn")
    if spec.mask_size % 2:
      raise ValueError(f"model.maskrcnn.mask_size must be even (the mask "
                       f"head upsamples 2x), got {spec.mask_size}.")
    return spec

  @property
  def num_anchors(self) -> int:
    """Anchors per position."""
    return len(self.anchor_scales) * len(self.anchor_ratios)


class MaskRCNN(nnx.Module):
  """Backbone, FPN, RPN head, box head and mask head (parameters only).

  The detection logic (proposals, targets, tracking) lives in pure functions
  of this module's outputs: `maskrcnn.losses`, `maskrcnn.tracking`.
  """

  def __init__(self, backbone: resnet.ResNet, spec: MaskRCNNSpec,
               fpn_dim: int = 32, norm_groups: int = 32, *, rngs: nnx.Rngs):
    self.spec = spec
    self.backbone = backbone
    self.fpn = fpn_lib.FPN(backbone.out_channels, fpn_dim, norm_groups,
                           rngs=rngs)
    self.rpn = rpn_lib.RPNHead(fpn_dim, spec.num_anchors, rngs=rngs)
    self.box_head = heads.BoxHead(fpn_dim, spec.box_roi_size, spec.head_dim,
                                  rngs=rngs)
    self.mask_head = heads.MaskHead(fpn_dim, spec.mask_convs, norm_groups,
                                    rngs=rngs)

  def pyramid(self, images: jax.Array) -> list[jax.Array]:
    """(B, H, W, 3) images in [0, 1] -> [P2..P5], (B, H_l, W_l, C) each."""
    return self.fpn(self.backbone(images))

  def anchors(self, levels: Sequence[jax.Array]) -> jax.Array:
    """(N, 4) anchors for pyramid levels of these (static) shapes: a
    constant of the compiled program."""
    shapes = [tuple(x.shape[-3:-1]) for x in levels]
    return jnp.asarray(anchors_lib.pyramid_anchors(
        shapes, STRIDES[:len(levels)], self.spec.anchor_scales,
        self.spec.anchor_ratios))
