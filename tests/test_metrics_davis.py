"""Known values and official conventions of the DAVIS J/F metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metavos.metrics import davis


def _rect(h, w, y0, y1, x0, x1):
  mask = np.zeros((h, w), bool)
  mask[y0:y1, x0:x1] = True
  return mask


def _stripe(h, w, top, height):
  """Full-width rows [top, top + height): boundaries are rows top-1 and
  top+height-1 (seg2bmap marks the pixel before each change)."""
  return _rect(h, w, top, top + height, 0, w)


# ----------------------------------------------------------------- J ------


def test_iou_of_overlapping_rectangles():
  a = _rect(40, 50, 0, 10, 0, 10)
  b = _rect(40, 50, 5, 15, 5, 15)
  assert davis.db_eval_iou(a, b) == pytest.approx(25 / 175)


def test_iou_empty_masks_is_one_and_empty_prediction_is_zero():
  empty = np.zeros((8, 9), bool)
  box = _rect(8, 9, 2, 4, 2, 5)
  np.testing.assert_array_equal(
      davis.db_eval_iou(np.stack([empty, box, empty]),
                        np.stack([empty, empty, box])), [1.0, 0.0, 0.0])


def test_iou_void_pixels_are_left_out_of_both_masks():
  gt = _rect(30, 40, 0, 10, 0, 10)
  pred = _rect(30, 40, 0, 10, 0, 20)  # 100 extra pixels...
  void = _rect(30, 40, 0, 10, 10, 20)  # ...all of them void.
  assert davis.db_eval_iou(gt, pred) == pytest.approx(0.5)
  assert davis.db_eval_iou(gt, pred, void) == 1.0
  # Everything void: both masks empty, J = 1.
  assert davis.db_eval_iou(gt, pred, np.ones_like(gt)) == 1.0


def test_iou_returns_a_float_for_one_frame_and_an_array_for_a_stack():
  a = _rect(5, 5, 0, 2, 0, 2)
  assert isinstance(davis.db_eval_iou(a, a), float)
  out = davis.db_eval_iou(np.stack([a] * 3), np.stack([a] * 3))
  assert out.shape == (3,) and out.dtype == np.float64


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="shape"):
    davis.db_eval_iou(np.zeros((4, 5)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match="shape"):
    davis.db_eval_boundary(np.zeros((4, 5)), np.zeros((4, 5)), np.zeros((4, 4)))


# ---------------------------------------------------------- boundaries ----


def test_seg2bmap_marks_the_pixel_before_each_change():
  seg = _rect(5, 6, 1, 3, 1, 3)
  expected = np.array([[1, 1, 1, 0, 0, 0],
                       [1, 0, 1, 0, 0, 0],
                       [1, 1, 1, 0, 0, 0],
                       [0, 0, 0, 0, 0, 0],
                       [0, 0, 0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(davis.seg2bmap(seg), expected)


def test_seg2bmap_border_rules():
  # Last row looks right only, last column down only, corner never.
  seg = _rect(3, 3, 1, 3, 1, 3)
  expected = np.array([[1, 1, 1],
                       [1, 0, 0],
                       [1, 0, 0]], bool)
  np.testing.assert_array_equal(davis.seg2bmap(seg), expected)
  # A mask filling the frame has no boundary at all.
  assert not davis.seg2bmap(np.ones((7, 70), bool)).any()


@pytest.mark.parametrize("width", [63, 64, 65, 128, 854])
def test_seg2bmap_at_word_edges(width):
  rng = np.random.default_rng(width)
  seg = rng.random((3, 9, width)) < 0.5
  expected = np.zeros_like(seg)
  for t in range(3):  # The rule written out pixel by pixel.
    s = seg[t]
    for y in range(9):
      for x in range(width):
        if y == 8 and x == width - 1:  # Bottom-right: never.
          continue
        if y == 8:  # Last row: right neighbour only.
          expected[t, y, x] = s[y, x] != s[y, x + 1]
        elif x == width - 1:  # Last column: pixel below only.
          expected[t, y, x] = s[y, x] != s[y + 1, x]
        else:
          expected[t, y, x] = (s[y, x] != s[y, x + 1] or s[y, x] != s[y + 1, x]
                               or s[y, x] != s[y + 1, x + 1])
  np.testing.assert_array_equal(davis.seg2bmap(seg), expected)


# ---------------------------------------------------------------- F -------


def test_boundary_radius_is_ceil_of_diagonal_fraction():
  assert davis.boundary_radius(480, 854) == 8  # 0.008 * 979.6 = 7.84
  assert davis.boundary_radius(240, 427) == 4  # 0.008 * 489.8 = 3.92
  assert davis.boundary_radius(1080, 1920) == 18
  assert davis.boundary_radius(10, 10, 3.0) == 3  # >= 1: pixels.
  with pytest.raises(ValueError, match="whole number"):
    davis.boundary_radius(10, 10, 2.5)


@pytest.mark.parametrize("h,w,radius", [(480, 854, 8), (240, 427, 4)])
def test_f_matches_exactly_within_the_radius(h, w, radius):
  gt = _stripe(h, w, 100, 100)
  for shift, expected in [(0, 1.0), (radius, 1.0), (radius + 1, 0.0)]:
    pred = _stripe(h, w, 100 + shift, 100)
    assert davis.db_eval_boundary(gt, pred) == expected, shift
    assert davis.db_eval_iou(gt, pred) == pytest.approx(
        (100 - shift) / (100 + shift))


def test_bound_th_of_one_or_more_is_pixels():
  gt, pred = _stripe(50, 60, 10, 20), _stripe(50, 60, 13, 20)
  assert davis.db_eval_boundary(gt, pred, bound_th=3) == 1.0
  assert davis.db_eval_boundary(gt, pred, bound_th=2) == 0.0


def test_f_partial_match_hand_computed():
  # GT boundary: rows 9 and 29 (60 px each). Prediction: rows 9 and 39.
  # Row 9 matches row 9; row 29 and row 39 are 10 apart (> radius 2) and
  # 20 from the others. P = R = 60 / 120, F = 0.5.
  gt, pred = _stripe(50, 60, 10, 20), _stripe(50, 60, 10, 30)
  assert davis.db_eval_boundary(gt, pred, bound_th=2) == pytest.approx(0.5)


def test_f_empty_conventions():
  empty = np.zeros((30, 40), bool)
  box = _rect(30, 40, 5, 15, 5, 15)
  full = np.ones((30, 40), bool)
  gt = np.stack([box, empty, box, empty, full, full])
  pred = np.stack([box, box, empty, empty, empty, box])
  # identical 1; empty GT: P = 0, R = 1 -> 0; empty prediction: P = 1,
  # R = 0 -> 0; both empty 1; a full frame has no boundary, so full vs empty
  # is "both empty" (1) and full vs box is "empty GT boundary" (0).
  np.testing.assert_array_equal(davis.db_eval_boundary(gt, pred),
                                [1, 0, 0, 1, 1, 0])


def test_f_void_clears_both_masks_before_boundaries():
  gt = _rect(30, 40, 5, 15, 5, 15)
  pred = _rect(30, 40, 5, 15, 5, 25)
  void = _rect(30, 40, 0, 30, 15, 40)  # Hides the extra part of pred...
  # ...but clearing it leaves pred's cut edge at column 14, where gt's right
  # edge also is: identical maps after clearing.
  assert davis.db_eval_boundary(gt, pred, void) == 1.0
  assert davis.db_eval_boundary(gt, pred) < 1.0


def test_disk_rows_match_skimage_disk():
  morphology = pytest.importorskip("skimage.morphology")
  for radius in range(0, 25):
    disk = morphology.disk(float(radius)).astype(bool)
    half = davis._disk_half_widths(radius)
    for dy in range(-radius, radius + 1):
      row = disk[dy + radius]
      w = half[abs(dy)]
      expected = np.zeros(2 * radius + 1, bool)
      expected[radius - w:radius + w + 1] = True
      np.testing.assert_array_equal(row, expected, err_msg=f"r={radius}")


@pytest.mark.parametrize("h,w,radius", [(48, 854, 8), (30, 64, 4), (20, 65, 1),
                                        (9, 200, 70), (13, 31, 0)])
def test_packed_dilation_equals_cv2_disk_dilation(h, w, radius):
  cv2 = pytest.importorskip("cv2")
  morphology = pytest.importorskip("skimage.morphology")
  rng = np.random.default_rng(radius)
  sparse = rng.random((3, h, w)) < 0.01
  sparse[0, 0, 0] = sparse[0, -1, -1] = sparse[1, 0, -1] = True
  layout = davis._layout(h, w, radius)
  ours = davis._unpack(
      davis._dilate(davis._pack(sparse, layout), radius, layout.words), layout)
  disk = morphology.disk(float(radius)).astype(np.uint8)
  for t in range(3):
    expected = cv2.dilate(sparse[t].astype(np.uint8), disk).astype(bool)
    np.testing.assert_array_equal(ours[t], expected)


# ---------------------------------------------------------- statistics ----


def test_statistics_of_ten_frames():
  mean, recall, decay = davis.db_statistics(np.arange(10) / 10)
  # Edges round(linspace(1, 10, 5)) - 1 = [0, 2, 5, 7, 9]: bins [0:3], [7:10].
  assert mean == pytest.approx(0.45)
  assert recall == pytest.approx(0.4)  # 0.6, 0.7, 0.8, 0.9 (0.5 is not > 0.5).
  assert decay == pytest.approx(0.1 - 0.8)


def test_decay_rounds_halves_up():
  # N = 3: linspace(1, 3, 5) = [1, 1.5, 2, 2.5, 3] -> edges [0, 1, 1, 2, 2];
  # round-half-to-even would give [0, 1, 1, 1, 2] and a last bin of 2 frames.
  assert davis.db_statistics([0.9, 0.6, 0.3])[2] == pytest.approx(0.75 - 0.3)
  # N = 7: edges [0, 2, 3, 5, 6] (not [0, 1, 3, 5, 6]).
  assert davis.db_statistics([1, 1, 0, 0, 0, 0, 0])[2] == pytest.approx(2 / 3)


def test_statistics_small_and_nan_inputs():
  assert davis.db_statistics([0.7]) == (0.7, 1.0, 0.0)
  mean, recall, decay = davis.db_statistics([math.nan, 1.0, 0.0, 1.0])
  assert mean == pytest.approx(2 / 3) and recall == 0.5
  assert all(math.isnan(v) for v in davis.db_statistics([]))


def test_statistics_of_a_long_sequence():
  # 300 frames (the official uint8 bin edges would wrap): edges are
  # [0, 75, 150, 224, 299], bins [0:76] ... [224:300].
  values = np.r_[np.ones(150), np.zeros(150)]
  assert davis.db_statistics(values)[2] == 1.0


# ------------------------------------------------------- videos, summary --


def _video(t=6, h=24, w=32):
  gt = np.zeros((t, h, w), np.uint8)
  gt[:, 2:10, 2:10] = 1
  gt[:, 12:20, 12:28] = 2
  return gt


def test_evaluate_video_scores_frames_one_to_t_minus_two():
  gt = _video()
  pred = gt.copy()
  pred[0] = 0  # First and last frames are not scored.
  pred[-1] = 7
  pred[2][pred[2] == 2] = 0  # Object 2 lost in frame 2.
  result = davis.evaluate_video(gt, pred, [1, 2])
  assert set(result) == {1, 2}
  np.testing.assert_array_equal(result[1]["J"], [1, 1, 1, 1])
  np.testing.assert_array_equal(result[2]["J"], [1, 0, 1, 1])
  np.testing.assert_array_equal(result[2]["F"], [1, 0, 1, 1])


def test_evaluate_video_void_is_background_by_default():
  gt = _video()
  gt[:, 2:10, 10:14] = 255  # Void right of object 1...
  pred = gt.copy()
  pred[pred == 255] = 0
  pred[:, 2:10, 10:14] = 1  # ...predicted as object 1.
  official = davis.evaluate_video(gt, pred, [1, 2])
  np.testing.assert_allclose(official[1]["J"], 64 / 96)  # Void = background.
  excluded = davis.evaluate_video(gt, pred, [1, 2], exclude_void=True)
  np.testing.assert_array_equal(excluded[1]["J"], 1.0)


def test_evaluate_video_rejects_bad_input():
  gt = _video()
  with pytest.raises(ValueError, match="3 frames"):
    davis.evaluate_video(gt[:2], gt[:2], [1])
  with pytest.raises(ValueError, match="must both be"):
    davis.evaluate_video(gt, gt[:, :-1], [1])
  with pytest.raises(ValueError, match="object_ids"):
    davis.evaluate_video(gt, gt, [0, 1])


def test_summarize_pools_objects_of_all_sequences():
  results = {
      "a": {1: {"J": np.array([1.0, 1.0]), "F": np.array([0.5, 0.5])},
            2: {"J": np.array([0.0, 0.0]), "F": np.array([1.0, 1.0])}},
      "b": {1: {"J": np.array([0.9, 0.3]), "F": np.array([0.6, 0.6])}},
  }
  summary = davis.summarize(results)
  assert list(summary) == ["global", "per_object"]
  assert list(summary["global"]) == list(davis.GLOBAL_KEYS)
  assert list(summary["per_object"]) == ["a_1", "a_2", "b_1"]
  assert list(summary["per_object"]["b_1"]) == list(davis.OBJECT_KEYS)
  g = summary["global"]
  assert g["J-Mean"] == pytest.approx((1 + 0 + 0.6) / 3)  # Per object.
  assert g["F-Mean"] == pytest.approx((0.5 + 1 + 0.6) / 3)
  assert g["J&F-Mean"] == pytest.approx((g["J-Mean"] + g["F-Mean"]) / 2)
  assert g["J-Recall"] == pytest.approx((1 + 0 + 0.5) / 3)
  assert summary["per_object"]["b_1"]["J-Decay"] == pytest.approx(0.6)
  assert all(isinstance(v, float) for v in g.values())
  with pytest.raises(ValueError):
    davis.summarize({})


def test_evaluator_accumulates_like_summarize():
  gt = _video()
  pred = np.roll(gt, 1, axis=2)
  evaluator = davis.DavisEvaluator()
  first = evaluator.add_video("s1", gt, gt, [1, 2])
  evaluator.add_video("s2", gt, pred, [1, 2])
  assert len(evaluator) == 2
  assert evaluator.result() == davis.summarize(
      {"s1": first, "s2": davis.evaluate_video(gt, pred, [1, 2])})
  assert evaluator.result()["per_object"]["s1_2"]["J-Mean"] == 1.0
  assert evaluator.result()["global"]["J-Mean"] < 1.0
  with pytest.raises(ValueError, match="already"):
    evaluator.add_video("s1", gt, gt, [1, 2])
