"""Greedy non-maximum suppression with static shapes.

XLA needs every shape known at compile time, so instead of returning a
variable number of boxes, `nms` returns a fixed number of indices with a
validity flag. The greedy pass is a `fori_loop` over the boxes in score
order against a precomputed IoU matrix: O(N^2) work, fine for the few
hundred pre-NMS proposals of one image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metavos.models.maskrcnn import boxes as boxes_lib


def nms(boxes: jax.Array, scores: jax.Array, valid: jax.Array,
        iou_threshold: float, max_output: int) -> tuple[jax.Array, jax.Array]:
  """Greedy NMS: a box is dropped if it overlaps a kept, higher-scoring box
  with IoU > `iou_threshold` (torchvision's rule; equal scores keep the
  earlier box).

  Args:
    boxes: (N, 4).
    scores: (N,).
    valid: (N,) bool; invalid boxes are never kept and suppress nothing.
    iou_threshold: overlap above which the lower-scoring box is dropped.
    max_output: number of indices returned (static).

  Returns:
    (indices (max_output,) int32 into `boxes`, kept (max_output,) bool): the
    kept boxes in descending score order, padded with dropped ones
    (kept=False) when fewer than `max_output` survive.
  """
  boxes, scores, valid = (jnp.asarray(x) for x in (boxes, scores, valid))
  n = boxes.shape[0]
  order = jnp.argsort(-jnp.where(valid, scores, -jnp.inf), stable=True)
  iou = boxes_lib.pairwise_iou(boxes[order], boxes[order])
  ranks = jnp.arange(n)
  # suppresses[j, i]: box j (ranked before i) would drop box i if kept.
  suppresses = (iou > iou_threshold) & (ranks[:, None] < ranks[None, :])
  valid_sorted = valid[order]

  def visit(i, keep):
    dropped = jnp.any(keep & suppresses[:, i])
    return keep.at[i].set(valid_sorted[i] & ~dropped)

  # zeros_like, not zeros: the carry then has the input's sharding type
  # (varying over the mesh inside the data-parallel meta step).
  keep = jax.lax.fori_loop(0, n, visit, jnp.zeros_like(valid_sorted))
  # Kept boxes first, each group in score order.
  pick = jnp.argsort(jnp.where(keep, ranks, n + ranks))[:max_output]
  return order[pick].astype(jnp.int32), keep[pick]
