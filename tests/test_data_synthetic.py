"""Tests for metavos.data.synthetic: determinism and ground-truth events."""

import functools

import numpy as np
import pytest

from metavos.data import davis, io, synthetic
from metavos.data.errors import DataError

TINY = dict(num_videos=2, num_frames=4, height=24, width=32, max_objects=2)


def _tree(root):
  return {p.relative_to(root): p.read_bytes()
          for p in sorted(root.rglob("*")) if p.is_file()}


@functools.cache
def _default_videos():
  """The default dataset's videos, before encoding (shared across tests)."""
  return [synthetic.sample_video(0, i) for i in range(6)]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
  a = _tree(synthetic.generate(tmp_path / "a", seed=3, **TINY))
  b = _tree(synthetic.generate(tmp_path / "b", seed=3, **TINY))
  c = _tree(synthetic.generate(tmp_path / "c", seed=4, **TINY))
  assert a == b
  assert a.keys() == c.keys() and a != c
  assert not any(".tmp" in str(p) for p in a)


def test_fixture_layout_and_ground_truth(synthetic_root):
  root = synthetic_root
  assert (root / "ImageSets/2017/train.txt").read_text().split() == [
      "synthetic-000", "synthetic-001"]
  assert (root / "ImageSets/2017/val.txt").read_text().split() == [
      "synthetic-002"]
  for name in ("synthetic-000", "synthetic-001", "synthetic-002"):
    masks = [io.read_mask_and_mode(root / f"Annotations/480p/{name}/{t:05d}.png")
             for t in range(6)]
    assert all(mode == "P" and m.shape == (48, 64) for m, mode in masks)
    assert set(np.unique(masks[0][0])) == {0, 1, 2}  # Both visible at t=0.
    assert io.read_image(root / f"JPEGImages/480p/{name}/00005.jpg").shape == (
        48, 64, 3)


def test_first_frame_shows_every_object():
  for video in _default_videos():
    num_objects = video.amodal.shape[0]
    assert set(np.unique(video.masks[0])) == set(range(num_objects + 1))


def test_objects_leave_and_reenter():
  for video in _default_videos():
    area = np.count_nonzero(video.masks == video.wanderer, axis=(1, 2))
    gone = np.flatnonzero(area == 0)
    assert area[0] > 0 and gone.size and area[gone[-1] + 1:].min() > 0


def test_objects_occlude_each_other():
  occluded = 0
  for video in _default_videos():
    ids = np.arange(1, video.amodal.shape[0] + 1)[:, None, None, None]
    visible = video.masks[None] == ids
    assert not (visible & ~video.amodal).any()  # Visible implies in shape.
    # Partly hidden: some of the shape is covered, some still visible.
    hidden = np.count_nonzero(video.amodal & ~visible, axis=(2, 3))
    occluded += np.count_nonzero((hidden > 0) & visible.any(axis=(2, 3)))
  assert occluded > 0


def _roundness(shape: np.ndarray) -> float | None:
  """Area over the area of the centred enclosing circle; None if clipped.

  Invariant to translation, rotation and scaling (up to pixels), so it only
  changes when the shape itself deforms.
  """
  if not shape.any() or shape[[0, -1]].any() or shape[:, [0, -1]].any():
    return None
  ys, xs = np.nonzero(shape)
  radius = np.hypot(ys - ys.mean(), xs - xs.mean()).max() + 0.5
  return shape.sum() / (np.pi * radius**2)


def test_objects_move_and_deform():
  moved = deformed = 0
  for video in _default_videos():
    for shape in video.amodal:
      inside = np.flatnonzero(shape.any(axis=(1, 2)))
      (ys, xs), (ye, xe) = np.nonzero(shape[inside[0]]), np.nonzero(
          shape[inside[-1]])
      moved += np.hypot(ys.mean() - ye.mean(), xs.mean() - xe.mean()) > 2
      roundness = [r for r in map(_roundness, shape) if r is not None]
      deformed += len(roundness) > 1 and np.ptp(roundness) > 0.1
  assert moved >= 6 and deformed >= 3


def test_year_2016_reading_of_synthetic(synthetic_root):
  v2016 = davis.DavisDataset(synthetic_root, 2016, "val").load("synthetic-002")
  v2017 = davis.DavisDataset(synthetic_root, 2017, "val").load("synthetic-002")
  np.testing.assert_array_equal(v2016.masks, (v2017.masks > 0).astype(np.uint8))
  assert v2016.object_ids == (1,)


def test_split_counts(tmp_path):
  root = synthetic.generate(tmp_path, splits={"a": 1, "b": 0, "c": 1}, **TINY)
  assert (root / "ImageSets/2017/c.txt").read_text() == "synthetic-001\n"
  assert (root / "ImageSets/2017/b.txt").read_text() == ""
  with pytest.raises(ValueError, match="sum to num_videos=2"):
    synthetic.generate(tmp_path, splits={"train": 1}, **TINY)


def test_ensure_generates_once(tmp_path):
  root = synthetic.ensure(tmp_path / "d", **TINY)
  marker = root / synthetic.MARKER
  frame = root / "JPEGImages/480p/synthetic-000/00000.jpg"
  frame_bytes = frame.read_bytes()
  frame.write_bytes(b"sentinel")  # A second call must not rewrite anything.
  synthetic.ensure(root, seed=0, **TINY)  # Explicit default: same settings.
  assert frame.read_bytes() == b"sentinel"
  with pytest.raises(DataError, match=r"\.complete: dataset was generated"):
    synthetic.ensure(root, **{**TINY, "num_frames": 5})
  marker.unlink()  # As if a run crashed before finishing.
  synthetic.ensure(root, **TINY)
  assert frame.read_bytes() == frame_bytes and marker.is_file()
