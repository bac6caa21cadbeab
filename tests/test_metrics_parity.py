"""Parity of metavos.metrics.davis with vos-benchmark's DAVIS J and F.

vos-benchmark's `Evaluator.feed_frame` runs the official davis2017-evaluation
per-frame code (seg2bmap, skimage disk, cv2.dilate, the empty-map rules).
It departs from the official toolkit in ways these tests avoid; the official
convention is tested with hand-computed values in test_metrics_davis.py:

  * No void mask: a 255 in the ground truth is scored as an object. The
    official db_eval_iou / f_measure with a void mask clear void pixels from
    both masks first, so void parity is checked by feeding vos-benchmark the
    masks with void already cleared.
  * Objects are all ids seen so far in ground truth or prediction, not those
    of the first frame, and an object's frame list starts where it is first
    seen; a frame where no object exists yet scores nothing. The helper below
    primes every object in a first frame so the lists line up.
  * Only J and F means (x100), no recall or decay (see db_statistics tests).
  * bound_th >= 1 is not a radius in pixels (the official f_measure's
    `bound_th if bound_th >= 1`): it always scales the diagonal.
"""

from __future__ import annotations

import numpy as np
import pytest

from metavos.metrics import davis

evaluator_lib = pytest.importorskip("vos_benchmark.evaluator")

_ATOL = 1e-6


def _reference_frames(gt: np.ndarray, pred: np.ndarray, num_objects: int):
  """vos-benchmark J and F per object for label maps (T, H, W).

  A primer frame holding every object (in both maps) is fed first, so each
  object's list covers every frame, as the official evaluation's does.
  """
  evaluator = evaluator_lib.Evaluator()
  primer = np.zeros(gt.shape[1:], np.uint8)
  for k in range(1, num_objects + 1):
    primer.flat[k - 1] = k
  evaluator.feed_frame(primer, primer)
  for t in range(gt.shape[0]):
    evaluator.feed_frame(pred[t].astype(np.uint8), gt[t].astype(np.uint8))
  j = {k: np.array(evaluator.object_iou[k][1:], float)
       for k in range(1, num_objects + 1)}
  f = {k: np.array(evaluator.boundary_f[k][1:], float)
       for k in range(1, num_objects + 1)}
  return j, f


def _blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """A union of random rectangles and ellipses, some touching the border."""
  yy, xx = np.mgrid[:h, :w]
  mask = np.zeros((h, w), bool)
  for _ in range(int(rng.integers(1, 4))):
    cy, cx = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
    ry, rx = rng.uniform(0.05, 0.5) * h + 0.5, rng.uniform(0.05, 0.5) * w + 0.5
    if rng.random() < 0.5:
      mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    else:
      mask |= (abs(yy - cy) < ry) & (abs(xx - cx) < rx)
  return mask


def _perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
  """A plausible prediction: shifted, with flipped pixels near the object."""
  dy, dx = rng.integers(-6, 7, 2)
  out = np.roll(mask, (dy, dx), axis=(0, 1))
  out ^= rng.random(mask.shape) < 0.01
  return out


def _edge_cases(h: int, w: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
  empty = np.zeros((h, w), bool)
  full = np.ones((h, w), bool)
  box = empty.copy()
  box[h // 4:h // 2 + 1, w // 4:w // 2 + 1] = True
  dot, dot2, corner = empty.copy(), empty.copy(), empty.copy()
  dot[h // 2, w // 2] = True
  dot2[h // 2, min(w // 2 + 1, w - 1)] = True
  corner[-1, -1] = True
  border = empty.copy()
  border[:, :max(w // 3, 1)] = True
  bottom_right = empty.copy()
  bottom_right[h // 2:, w // 2:] = True
  return [
      ("empty prediction", box, empty),
      ("empty ground truth", empty, box),
      ("both empty", empty, empty),
      ("identical", box, box),
      ("1-pixel objects, same", dot, dot),
      ("1-pixel objects, adjacent", dot, dot2),
      ("1-pixel object in the bottom-right corner", corner, dot),
      ("full frame vs box", full, box),
      ("full frame vs empty", full, empty),
      ("touching left border", border, box),
      ("touching bottom-right border", bottom_right, box),
      ("bottom-right vs left border", bottom_right, border),
  ]


_SIZES = [(480, 854), (240, 427), (37, 91), (91, 37), (64, 128), (1, 50),
          (50, 1), (2, 2)]


@pytest.mark.parametrize("h,w", _SIZES)
def test_edge_cases_match_vos_benchmark(h, w):
  cases = _edge_cases(h, w)
  gt = np.stack([g for _, g, _ in cases])
  pred = np.stack([p for _, _, p in cases])
  ref_j, ref_f = _reference_frames(gt, pred, 1)
  j = davis.db_eval_iou(gt, pred)
  f = davis.db_eval_boundary(gt, pred)
  for i, (name, _, _) in enumerate(cases):
    assert j[i] == pytest.approx(ref_j[1][i], abs=_ATOL), f"J, {name}"
    assert f[i] == pytest.approx(ref_f[1][i], abs=_ATOL), f"F, {name}"


@pytest.mark.parametrize("h,w", [(480, 854), (37, 91), (91, 37), (128, 64)])
def test_random_shapes_match_vos_benchmark(h, w):
  rng = np.random.default_rng(h * 1000 + w)
  gt = np.stack([_blob(rng, h, w) for _ in range(6)])
  pred = np.stack([_perturb(rng, g) for g in gt])
  ref_j, ref_f = _reference_frames(gt, pred, 1)
  np.testing.assert_allclose(davis.db_eval_iou(gt, pred), ref_j[1], atol=_ATOL)
  np.testing.assert_allclose(davis.db_eval_boundary(gt, pred), ref_f[1],
                             atol=_ATOL)


def test_single_frame_inputs_match_vos_benchmark():
  rng = np.random.default_rng(7)
  gt, pred = _blob(rng, 60, 80), _blob(rng, 60, 80)
  ref_j, ref_f = _reference_frames(gt[None], pred[None], 1)
  assert davis.db_eval_iou(gt, pred) == pytest.approx(ref_j[1][0], abs=_ATOL)
  assert davis.db_eval_boundary(gt, pred) == pytest.approx(ref_f[1][0],
                                                           abs=_ATOL)


def test_void_matches_vos_benchmark_on_cleared_masks():
  # The official void handling clears void pixels from both masks.
  rng = np.random.default_rng(3)
  h, w = 120, 200
  gt = np.stack([_blob(rng, h, w) for _ in range(5)])
  pred = np.stack([_perturb(rng, g) for g in gt])
  void = np.zeros_like(gt)
  void[:, 40:70, :] = True  # A band crossing the objects.
  void[2] = _blob(rng, h, w)
  ref_j, ref_f = _reference_frames(gt & ~void, pred & ~void, 1)
  np.testing.assert_allclose(davis.db_eval_iou(gt, pred, void), ref_j[1],
                             atol=_ATOL)
  np.testing.assert_allclose(davis.db_eval_boundary(gt, pred, void), ref_f[1],
                             atol=_ATOL)


@pytest.mark.parametrize("bound_th", [0.004, 0.02, 0.05])
def test_other_tolerances_match_vos_benchmark(bound_th, monkeypatch):
  rng = np.random.default_rng(11)
  gt = np.stack([_blob(rng, 100, 150) for _ in range(4)])
  pred = np.stack([_perturb(rng, g) for g in gt])
  # vos-benchmark has no bound_th argument; its `boundary` attribute is it.
  monkeypatch.setattr(evaluator_lib.Evaluator, "__init__",
                      _init_with_boundary(bound_th))
  _, ref_f = _reference_frames(gt, pred, 1)
  ours = davis.db_eval_boundary(gt, pred, bound_th=bound_th)
  np.testing.assert_allclose(ours, ref_f[1], atol=_ATOL)


def _init_with_boundary(bound_th):
  original = evaluator_lib.Evaluator.__init__

  def init(self, boundary=0.008, name=None):
    original(self, boundary=bound_th, name=name)

  return init


def test_long_multi_object_video_matches_vos_benchmark():
  # 60 frames, 3 objects painted over each other; frames 1..58 are scored.
  rng = np.random.default_rng(5)
  t, h, w, k = 60, 96, 170, 3
  gt = np.zeros((t, h, w), np.uint8)
  pred = np.zeros((t, h, w), np.uint8)
  for obj in range(1, k + 1):
    base = _blob(rng, h, w)
    for i in range(t):
      moved = np.roll(base, (i // 4, i), axis=(0, 1))
      gt[i][moved] = obj
      pred[i][_perturb(rng, moved)] = obj
  pred[20] = 0  # A frame where every object is lost.
  pred[30][pred[30] == 2] = 0  # One object lost.
  ours = davis.evaluate_video(gt, pred, range(1, k + 1))
  ref_j, ref_f = _reference_frames(gt[1:-1], pred[1:-1], k)
  for obj in range(1, k + 1):
    np.testing.assert_allclose(ours[obj]["J"], ref_j[obj], atol=_ATOL)
    np.testing.assert_allclose(ours[obj]["F"], ref_f[obj], atol=_ATOL)
    assert ours[obj]["J"].shape == (t - 2,)
