"""Region proposal network: a shared head over the pyramid, and proposals.

The head predicts, for every anchor, an objectness logit and box deltas.
`propose` turns them into a fixed number of proposals per image: the
`pre_nms_topk` highest-scoring anchors over all levels, decoded and clipped,
then static-shape NMS down to `num_proposals` (padded with flagged boxes
when fewer survive).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from metavos.models import resnet
from metavos.models.maskrcnn import boxes as boxes_lib
from metavos.models.maskrcnn import nms as nms_lib
from metavos.runtime import platform


def _head_conv(in_ch: int, out_ch: int, std: float,
               rngs: nnx.Rngs) -> nnx.Conv:
  # Small initial outputs (torchvision: std 0.01): proposals start near the
  # anchors and objectness near p = 0.5.
  return nnx.Conv(in_ch, out_ch, (1, 1), use_bias=True,
                  kernel_init=nnx.initializers.normal(std), rngs=rngs,
                  conv_general_dilated=platform.conv_general_dilated())


class RPNHead(nnx.Module):
  """3x3 conv + ReLU, then 1x1 convs to A logits and 4A deltas per position.

  Shared by every pyramid level, so an object is scored the same way
  whatever level its size maps to.
  """

  def __init__(self, dim: int, num_anchors: int, *, rngs: nnx.Rngs):
    self.conv = resnet.conv(dim, dim, 3, 1, rngs, use_bias=True)
    self.objectness = _head_conv(dim, num_anchors, 0.01, rngs)
    self.deltas = _head_conv(dim, 4 * num_anchors, 0.01, rngs)

  def __call__(self, levels: Sequence[jax.Array]
               ) -> tuple[jax.Array, jax.Array]:
    """Maps [(B, H_l, W_l, C)] to logits (B, N) and deltas (B, N, 4).

    N counts every anchor of every level in `anchors.pyramid_anchors`
    order: level, then (y, x, anchor).
    """
    logits, deltas = [], []
    for x in levels:
      h = jax.nn.relu(self.conv(x))
      b = x.shape[0]
      logits.append(self.objectness(h).reshape(b, -1))
      deltas.append(self.deltas(h).reshape(b, -1, 4))
    return jnp.concatenate(logits, 1), jnp.concatenate(deltas, 1)


def propose(logits: jax.Array, deltas: jax.Array, anchors: jax.Array,
            height: int, width: int, pre_nms_topk: int, num_proposals: int,
            nms_iou: float) -> tuple[jax.Array, jax.Array]:
  """One image's proposals, a fixed number of them.

  Args:
    logits: (N,) objectness logits.
    deltas: (N, 4) anchor deltas.
    anchors: (N, 4).
    height, width: image size, to clip the boxes.
    pre_nms_topk: anchors kept by score before NMS.
    num_proposals: boxes returned.
    nms_iou: NMS IoU threshold.

  Returns:
    (boxes (num_proposals, 4), valid (num_proposals,) bool).
  """
  k = min(pre_nms_topk, logits.shape[0])
  if num_proposals > k:
    raise ValueError(f"num_proposals ({num_proposals}) must not exceed the "
                     f"pre-NMS top-k ({k}); lower model.maskrcnn."
                     "num_proposals or raise pre_nms_topk.")
  scores, index = jax.lax.top_k(logits, k)
  boxes = boxes_lib.clip(
      boxes_lib.decode(deltas[index], anchors[index]), height, width)
  # Boxes squeezed to (almost) nothing by clipping carry no features.
  valid = ((boxes[:, 2] - boxes[:, 0]) > 0.5) & (
      (boxes[:, 3] - boxes[:, 1]) > 0.5)
  keep, kept = nms_lib.nms(boxes, scores, valid, nms_iou, num_proposals)
  return boxes[keep], kept
