"""Per-frame detection with bounding-box propagation (e-OSVOS tracking).

For each frame the previous frame's box, and jittered copies of it (each
side moved by up to `box_jitter` of the box's size), join the RPN's
proposals; the box head scores and refines all of them, the single
highest-scoring box is the object's detection in this frame, the mask head
segments it, and its 28x28 mask is pasted into the frame. The detection's
box is the state carried to the next frame.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from metavos.models.maskrcnn import boxes as boxes_lib
from metavos.models.maskrcnn import model as model_lib
from metavos.models.maskrcnn import paste
from metavos.models.maskrcnn import roi_align as roi_lib
from metavos.models.maskrcnn import rpn as rpn_lib


def candidate_boxes(model: model_lib.MaskRCNN, levels: Sequence[jax.Array],
                    prev_box: jax.Array, rng: jax.Array, height: int,
                    width: int) -> tuple[jax.Array, jax.Array]:
  """RPN proposals plus, with box propagation on, the previous box and its
  jittered copies: (R, 4) boxes and (R,) validity."""
  spec = model.spec
  logits, deltas = model.rpn([x[None] for x in levels])
  boxes, ok = rpn_lib.propose(logits[0], deltas[0], model.anchors(levels),
                              height, width, spec.pre_nms_topk,
                              spec.num_proposals, spec.nms_iou)
  if not spec.box_propagation:
    return boxes, ok
  prop = jnp.concatenate([prev_box[None], boxes_lib.jitter(
      rng, prev_box, spec.num_propagated - 1, spec.box_jitter)])
  prop = boxes_lib.clip(prop, height, width)
  return (jnp.concatenate([boxes, prop]),
          jnp.concatenate([ok, boxes_lib.area(prop) > 0]))


def detect(model: model_lib.MaskRCNN, levels: Sequence[jax.Array],
           prev_box: jax.Array, rng: jax.Array, height: int,
           width: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One detection of the object in one frame.

  Args:
    model: the adapted detector.
    levels: the frame's pyramid, [(H_l, W_l, C)].
    prev_box: (4,) the object's box in the previous frame.
    rng: draws the jitter.
    height, width: frame size.

  Returns:
    (probs (H, W) float32, box (4,), score) with `score` the detection's
    object probability.
  """
  spec = model.spec
  strides = model_lib.STRIDES[:len(levels)]
  rois, ok = candidate_boxes(model, levels, prev_box, rng, height, width)
  logits, deltas = model.box_head(roi_lib.multilevel_roi_align(
      levels, strides, rois, spec.box_roi_size, spec.roi_sampling_ratio))
  refined = boxes_lib.clip(
      boxes_lib.decode(deltas, rois, boxes_lib.BOX_WEIGHTS), height, width)
  best = jnp.argmax(jnp.where(ok, logits, -jnp.inf))
  box = refined[best]
  mask_logits = model.mask_head(roi_lib.multilevel_roi_align(
      levels, strides, box[None], spec.mask_size // 2,
      spec.roi_sampling_ratio))[0]
  probs = paste.paste_mask(jax.nn.sigmoid(mask_logits.astype(jnp.float32)),
                           box, height, width)
  return probs, box, jax.nn.sigmoid(logits[best])
