"""Mask R-CNN training loss for one object: RPN + box head + mask head.

The ground-truth box is the tight box of the object's mask, computed inside
the jitted function, so the detector trains on exactly the data the dense
segmenters train on (binary masks). Every sampling step of the original
recipe is replaced by a static-shape equivalent:

- RPN: every anchor takes part; positives (IoU >= 0.7 with the box, or the
  best anchor) and negatives (IoU < 0.3) each contribute their own mean, so
  the few positives are not swamped by thousands of negatives.
- RoIs: the image's proposals plus the ground-truth box and jittered copies
  of it (the boxes that box propagation adds at test time, so the box head
  learns to refine them). RoIs with IoU >= 0.5 are foreground; the class
  loss is balanced like the RPN's.
- Mask: the configured pixel loss (the Lovász hinge by default) on each
  foreground RoI's 28x28 target, cut from the mask with RoIAlign.

A frame without the object (an e-OSVOS query frame, or an empty online
prediction) has no positives: only the "background everywhere" terms count.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from metavos.models.maskrcnn import boxes as boxes_lib
from metavos.models.maskrcnn import model as model_lib
from metavos.models.maskrcnn import roi_align as roi_lib
from metavos.models.maskrcnn import rpn as rpn_lib

RPN_POSITIVE_IOU = 0.7
RPN_NEGATIVE_IOU = 0.3
ROI_FOREGROUND_IOU = 0.5


def _masked_mean(x: jax.Array, weight: jax.Array) -> jax.Array:
  """Mean of `x` where `weight` (bool) is True; 0 when nowhere."""
  total = jnp.sum(jnp.where(weight, x, 0.0))
  return total / jnp.maximum(jnp.sum(weight.astype(x.dtype)), 1.0)


def balanced_logistic(logits: jax.Array, positive: jax.Array,
                      negative: jax.Array) -> jax.Array:
  """Half the mean BCE over positives plus half over negatives."""
  pos = _masked_mean(jax.nn.softplus(-logits), positive)
  neg = _masked_mean(jax.nn.softplus(logits), negative)
  return 0.5 * (pos + neg)


def smooth_l1(x: jax.Array, beta: float) -> jax.Array:
  """Huber-style loss summed over the last axis (Fast R-CNN); plain L1 at
  beta = 0 (Detectron2's box head: small errors keep a full gradient, which
  is what sub-pixel box precision, and so mask IoU, needs)."""
  a = jnp.abs(x)
  if beta == 0:
    return jnp.sum(a, -1)
  return jnp.sum(jnp.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta), -1)


def image_loss(model: model_lib.MaskRCNN, levels: Sequence[jax.Array],
               mask: jax.Array, valid: jax.Array, rng: jax.Array,
               pixel_loss: Callable) -> dict[str, jax.Array]:
  """The loss terms of one image.

  Args:
    model: the detector (its parameters may be tracers).
    levels: the image's pyramid, [(H_l, W_l, C)].
    mask: (H, W) {0, 1} object mask.
    valid: (H, W) bool, False on void pixels.
    rng: draws the jittered ground-truth RoIs.
    pixel_loss: `loss(logits, labels, valid) -> scalar` for the mask head.

  Returns:
    {"rpn_class", "rpn_box", "box_class", "box_reg", "mask"}: scalars.
  """
  spec = model.spec
  height, width = mask.shape
  gt, present = boxes_lib.mask_to_box(mask * valid)
  anchors = model.anchors(levels)
  logits, deltas = model.rpn([x[None] for x in levels])
  logits, deltas = logits[0], deltas[0]

  iou = boxes_lib.pairwise_iou(anchors, gt[None])[:, 0]
  best = iou >= jnp.max(iou) - 1e-6
  pos = present & ((iou >= RPN_POSITIVE_IOU) | (best & (iou > 0)))
  neg = ~pos & (iou < RPN_NEGATIVE_IOU)
  rpn_target = boxes_lib.encode(gt[None], anchors)
  terms = {"rpn_class": balanced_logistic(logits, pos, neg),
           "rpn_box": _masked_mean(smooth_l1(deltas - rpn_target, 1 / 9),
                                   pos)}

  # Proposals are inputs of the RoI heads, not a path for gradients.
  proposals, proposal_ok = rpn_lib.propose(
      jax.lax.stop_gradient(logits), jax.lax.stop_gradient(deltas), anchors,
      height, width, spec.pre_nms_topk, spec.num_proposals, spec.nms_iou)
  jittered = boxes_lib.clip(
      boxes_lib.jitter(rng, gt, spec.num_propagated, spec.box_jitter),
      height, width)
  rois = jnp.concatenate([proposals, gt[None], jittered])
  roi_ok = jnp.concatenate([proposal_ok,
                            jnp.full((1 + spec.num_propagated,), present)])
  roi_ok &= boxes_lib.area(rois) > 0

  strides = model_lib.STRIDES[:len(levels)]
  score, box_deltas = model.box_head(roi_lib.multilevel_roi_align(
      levels, strides, rois, spec.box_roi_size, spec.roi_sampling_ratio))
  fg = roi_ok & present & (
      boxes_lib.pairwise_iou(rois, gt[None])[:, 0] >= ROI_FOREGROUND_IOU)
  bg = roi_ok & ~fg
  box_target = boxes_lib.encode(gt[None], rois, boxes_lib.BOX_WEIGHTS)
  terms["box_class"] = balanced_logistic(score, fg, bg)
  terms["box_reg"] = _masked_mean(smooth_l1(box_deltas - box_target, 1.0), fg)

  half = spec.mask_size // 2
  mask_logits = model.mask_head(roi_lib.multilevel_roi_align(
      levels, strides, rois, half, spec.roi_sampling_ratio))
  # The target and its valid pixels, cut from the mask at every RoI at once.
  planes = jnp.stack([mask * valid, valid], -1).astype(jnp.float32)
  crops = roi_lib.roi_align(planes, rois, spec.mask_size, 1.0,
                            spec.roi_sampling_ratio) >= 0.5
  target, target_ok = crops[..., 0], crops[..., 1]
  per_roi = jax.vmap(lambda l, t, v: pixel_loss(l[None], t[None], v[None]))(
      mask_logits, target, target_ok)
  terms["mask"] = _masked_mean(per_roi, fg)
  return terms
