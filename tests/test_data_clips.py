"""Clip sampler: determinism, gap bound, labelled starts, masks."""

import numpy as np
import pytest

from metavos.data import sampling
from metavos.data.clips import ClipSampler
from metavos.data.sampling import TrainVideo


def _videos():
  """Two videos of 12 frames (8x8); object 1 everywhere, object 2 in the
  second video only from frame 6 on; a void pixel in every frame."""
  out = []
  for n in range(2):
    masks = np.zeros((12, 8, 8), np.uint8)
    masks[:, :4, :4] = 1
    if n == 1:
      masks[6:, 4:, 4:] = 2
    masks[:, 7, 0] = 255
    frames = np.arange(12, dtype=np.uint8)[:, None, None, None] * np.ones(
        (12, 8, 8, 3), np.uint8)  # the frame's index, readable back
    out.append(TrainVideo(f"v{n}", frames, masks, np.ones(12, bool),
                          (1, 2) if n else (1,)))
  return out


def test_deterministic_in_seed_step_and_process():
  s = ClipSampler(_videos(), 3, 4, 2, seed=0)
  a, b = s.sample(5, 4), s.sample(5, 4)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  other = s.sample(6, 4)["frame_index"]
  half = s.sample(5, 4, process_index=1, process_count=2)["frame_index"]
  assert half.shape == (2, 3)
  assert not np.array_equal(other, a["frame_index"])


def test_gaps_directions_and_frames_match_indices():
  s = ClipSampler(_videos(), 3, 4, 2, seed=1)
  dirs = set()
  for step in range(20):
    b = s.sample(step, 4)
    gaps = np.diff(b["frame_index"], axis=1)
    assert np.all((np.abs(gaps) >= 1) & (np.abs(gaps) <= 4))
    assert np.all(np.sign(gaps[:, :1]) == np.sign(gaps))  # one direction
    dirs |= set(np.sign(gaps[:, 0]).tolist())
    np.testing.assert_allclose(b["frames"][:, :, 0, 0, 0] * 255,
                               b["frame_index"], atol=1e-4)
    assert b["frames"].shape == (4, 3, 8, 8, 3)
    assert b["masks"].shape == (4, 3, 2, 8, 8)
  assert dirs == {-1, 1}


def test_objects_are_from_the_first_frame_one_hot_with_void_invalid():
  s = ClipSampler(_videos(), 2, 1, 3, seed=2)
  b = s.sample(0, 8)
  for i in range(8):
    first = b["frame_index"][i, 0]
    n = int(b["present"][i].sum())
    expect = 2 if (b["video_index"][i] == 1 and first >= 6) else 1
    assert n == expect  # padded to K=3 with absent objects
    assert b["masks"][i, :, n:].max() == 0
    assert b["masks"][i].sum(1).max() <= 1  # one-hot
    assert not b["valid"][i, :, 7, 0].any()  # void


def test_label_set_clips_start_labelled_and_zero_the_rest():
  labels = {"v0": [2], "v1": [9]}
  s = ClipSampler(_videos(), 3, 3, 2, seed=3, label_set=labels)
  assert sorted(s.starts) == [(0, 2), (1, 9)]
  for step in range(10):
    b = s.sample(step, 4)
    for i in range(4):
      first = b["frame_index"][i, 0]
      assert first == labels[f"v{b['video_index'][i]}"][0]
      assert b["labelled"][i].tolist() == [True, False, False]
      assert b["masks"][i, 1:].max() == 0 and not b["valid"][i, 1:].any()
      assert b["masks"][i, 0].max() == 1


def test_no_possible_clip_says_how_to_fix():
  with pytest.raises(ValueError, match="clip.length"):
    ClipSampler(_videos(), 13, 1, 1, seed=0)
  assert len(ClipSampler(sampling.prepare([], (8, 8)) + _videos(), 12, 1, 1,
                         seed=0)) == 2 * 2  # frames 0 and 11, one direction
