"""Mask R-CNN building blocks against straightforward NumPy references."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.models.maskrcnn import anchors, boxes, nms, paste, roi_align


def _random_boxes(rng, n, size=60.0):
  xy = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(2, size / 2, (n, 2))
  return np.concatenate([xy, xy + wh], 1).astype(np.float32)


# ---------------------------------------------------------------- anchors

def _anchors_reference(height, width, stride, scales, ratios):
  out = []
  for y, x in itertools.product(range(height), range(width)):
    cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
    for s, r in itertools.product(scales, ratios):
      area = (s * stride) ** 2
      w = math.sqrt(area / r)  # h / w = r and h * w = area
      h = r * w
      out.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
  return np.asarray(out)


def test_level_anchors_match_reference_in_head_order():
  got = anchors.level_anchors(3, 5, 8, (2.0, 4.0), (0.5, 1.0, 2.0))
  np.testing.assert_allclose(got, _anchors_reference(3, 5, 8, (2.0, 4.0),
                                                     (0.5, 1.0, 2.0)),
                             rtol=1e-5, atol=1e-4)


def test_pyramid_anchors_concatenate_levels_finest_first():
  got = anchors.pyramid_anchors([(4, 6), (2, 3)], (4, 8), (4.0,), (1.0,))
  assert got.shape == (4 * 6 + 2 * 3, 4)
  np.testing.assert_allclose(got[24:], _anchors_reference(2, 3, 8, (4.0,),
                                                          (1.0,)), atol=1e-4)


# ---------------------------------------------------------------- boxes

def test_encode_matches_reference_and_decode_inverts_it():
  rng = np.random.default_rng(0)
  ref, target = _random_boxes(rng, 50), _random_boxes(rng, 50)
  weights = (10.0, 10.0, 5.0, 5.0)
  rw, rh = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
  tw, th = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
  expected = np.stack([
      10 * ((target[:, 0] + tw / 2) - (ref[:, 0] + rw / 2)) / rw,
      10 * ((target[:, 1] + th / 2) - (ref[:, 1] + rh / 2)) / rh,
      5 * np.log(tw / rw), 5 * np.log(th / rh)], 1)
  deltas = boxes.encode(target, ref, weights)
  np.testing.assert_allclose(deltas, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(boxes.decode(deltas, ref, weights), target,
                             rtol=1e-5, atol=1e-3)


def test_pairwise_iou_matches_reference():
  rng = np.random.default_rng(1)
  a, b = _random_boxes(rng, 7), _random_boxes(rng, 9)
  expected = np.zeros((7, 9))
  for i, j in itertools.product(range(7), range(9)):
    iw = max(0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
    ih = max(0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
    inter = iw * ih
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])
    expected[i, j] = inter / (area(a[i]) + area(b[j]) - inter)
  np.testing.assert_allclose(boxes.pairwise_iou(a, b), expected, rtol=1e-5,
                             atol=1e-6)


def test_mask_to_box_is_tight_and_flags_empty_masks():
  mask = np.zeros((20, 30), np.float32)
  mask[4:9, 11:25] = 1
  box, present = boxes.mask_to_box(jnp.asarray(mask))
  np.testing.assert_array_equal(box, [11, 4, 25, 9])
  assert bool(present)
  box, present = boxes.mask_to_box(jnp.zeros((20, 30)))
  np.testing.assert_array_equal(box, [0, 0, 0, 0])
  assert not bool(present)


def test_jitter_moves_each_side_by_at_most_the_fraction():
  box = jnp.array([10.0, 20.0, 50.0, 40.0])  # 40 wide, 20 high
  out = np.asarray(boxes.jitter(jax.random.key(0), box, 500, 0.1))
  moved = np.abs(out - np.asarray(box))
  limit = np.array([4.0, 2.0, 4.0, 2.0])
  assert (moved <= limit + 1e-5).all()
  assert (moved.max(0) > 0.9 * limit).all()  # the whole range is used


# ---------------------------------------------------------------- NMS

def _nms_reference(b, scores, threshold):
  order = sorted(range(len(b)), key=lambda i: -scores[i])  # stable
  keep = []
  for i in order:
    if all(_iou(b[i], b[j]) <= threshold for j in keep):
      keep.append(i)
  return keep


def _iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
           - inter)
  return inter / union


@pytest.mark.parametrize("seed, threshold", [(0, 0.5), (1, 0.3), (2, 0.6)])
def test_nms_matches_greedy_reference(seed, threshold):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(0, 30, (60, 2))  # crowded: many overlaps
  b = np.concatenate([xy, xy + rng.uniform(8, 30, (60, 2))], 1).astype(
      np.float32)
  scores = rng.random(60).astype(np.float32)
  expected = _nms_reference(b, scores, threshold)
  idx, kept = jax.jit(nms.nms, static_argnums=(3, 4))(
      b, scores, np.ones(60, bool), threshold, 60)
  idx, kept = np.asarray(idx), np.asarray(kept)
  assert 5 < len(expected) < 55  # the case exercises suppression
  np.testing.assert_array_equal(idx[kept], expected)
  assert not kept[len(expected):].any()


def test_nms_pads_and_ignores_invalid_boxes():
  b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]],
               np.float32)
  scores = np.array([0.9, 0.8, 0.99], np.float32)
  valid = np.array([True, True, False])
  idx, kept = nms.nms(b, scores, valid, 0.5, 3)
  # Box 2 is invalid and box 1 overlaps box 0: one box survives, padded.
  np.testing.assert_array_equal(np.asarray(kept), [True, False, False])
  assert int(idx[0]) == 0


# ---------------------------------------------------------------- RoIAlign

def _bilinear(f, y, x):
  """Detectron2's ROIAlign bilinear_interpolate for one point."""
  h, w = f.shape[:2]
  if y < -1.0 or y > h or x < -1.0 or x > w:
    return np.zeros(f.shape[2])
  y, x = max(y, 0.0), max(x, 0.0)
  y0, x0 = int(y), int(x)
  if y0 >= h - 1:
    y0 = y1 = h - 1
    y = float(y0)
  else:
    y1 = y0 + 1
  if x0 >= w - 1:
    x0 = x1 = w - 1
    x = float(x0)
  else:
    x1 = x0 + 1
  ly, lx = y - y0, x - x0
  return ((1 - ly) * (1 - lx) * f[y0, x0] + (1 - ly) * lx * f[y0, x1]
          + ly * (1 - lx) * f[y1, x0] + ly * lx * f[y1, x1])


def _roi_align_reference(f, rois, size, scale, ratio):
  out = np.zeros((len(rois), size, size, f.shape[2]))
  for r, (x1, y1, x2, y2) in enumerate(rois):
    x1, y1, x2, y2 = (v * scale - 0.5 for v in (x1, y1, x2, y2))
    bh, bw = (y2 - y1) / size, (x2 - x1) / size
    for i, j in itertools.product(range(size), range(size)):
      acc = 0.0
      for iy, ix in itertools.product(range(ratio), range(ratio)):
        y = y1 + (i + (iy + 0.5) / ratio) * bh
        x = x1 + (j + (ix + 0.5) / ratio) * bw
        acc = acc + _bilinear(f, y, x)
      out[r, i, j] = acc / ratio**2
  return out


@pytest.mark.parametrize("scale, ratio", [(1.0, 2), (0.25, 1), (0.5, 3)])
def test_roi_align_matches_detectron2_reference(scale, ratio):
  rng = np.random.default_rng(3)
  f = rng.standard_normal((13, 17, 3)).astype(np.float32)
  rois = np.array([[2.0, 3.0, 30.0, 20.0],     # inside
                   [-6.0, -4.0, 12.0, 9.0],    # over the top-left border
                   [40.0, 30.0, 90.0, 70.0],   # over the bottom-right one
                   [5.5, 6.25, 6.0, 7.0]],     # smaller than a pixel
                  np.float32) / scale * 0.25
  got = roi_align.roi_align(jnp.asarray(f), jnp.asarray(rois), 5, scale, ratio)
  np.testing.assert_allclose(got, _roi_align_reference(f, rois, 5, scale,
                                                       ratio),
                             rtol=1e-4, atol=1e-5)


def test_multilevel_roi_align_uses_the_fpn_level_of_each_box():
  rng = np.random.default_rng(4)
  levels = [jnp.asarray(rng.standard_normal((32 // s, 32 // s, 2)),
                        jnp.float32) for s in (4, 8, 16, 32)]
  rois = jnp.array([[0, 0, 20, 20], [0, 0, 112 * 2, 112 * 2]], jnp.float32)
  # sqrt(area) 20 -> level 2 (index 0); 224 -> level 4 (index 2).
  np.testing.assert_array_equal(roi_align.level_of(rois, 4), [0, 2])
  got = roi_align.multilevel_roi_align(levels, (4, 8, 16, 32), rois, 3, 2)
  np.testing.assert_allclose(
      got[1], roi_align.roi_align(levels[2], rois[1:], 3, 1 / 16, 2)[0],
      rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      got[0], roi_align.roi_align(levels[0], rois[:1], 3, 1 / 4, 2)[0],
      rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- paste

def test_paste_places_the_mask_inside_its_box_only():
  box = jnp.array([10.0, 4.0, 38.0, 18.0])
  ones = paste.paste_mask(jnp.ones((28, 28)), box, 24, 48)
  inside = np.zeros((24, 48), bool)
  inside[5:17, 11:37] = True  # one pixel in from every side
  assert np.allclose(np.asarray(ones)[inside], 1.0, atol=1e-5)
  outside = np.ones((24, 48), bool)
  outside[3:19, 9:39] = False  # one pixel out from every side
  assert np.abs(np.asarray(ones)[outside]).max() == 0.0
  # A left/right split mask lands on the box's left/right halves.
  half = paste.paste_mask(jnp.zeros((28, 28)).at[:, :14].set(1.0), box, 24,
                          48)
  assert float(half[10, 15]) > 0.99 and float(half[10, 33]) < 0.01
