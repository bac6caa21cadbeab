"""Frame suggestion: entropy scores and ranking."""

import numpy as np

from metavos.finetune import suggest


def test_uncertainty_is_one_at_half_and_zero_when_certain():
  probs = np.zeros((2, 3, 4, 4), np.float32)
  probs[:, 1] = 0.5          # frame 1: maximally unsure for both objects
  probs[0, 2] = 1.0          # frame 2: certain
  scores = suggest.frame_uncertainty(probs)
  np.testing.assert_allclose(scores, [0.0, 1.0, 0.0], atol=1e-4)


def test_entropy_matches_hand_value():
  probs = np.full((1, 1, 2, 2), 0.25)
  h = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))  # 0.8113 bits
  np.testing.assert_allclose(suggest.frame_uncertainty(probs), [h], rtol=1e-9)


def test_rank_skips_annotated_and_their_neighbours():
  scores = np.array([0.9, 0.8, 0.1, 0.5, 0.7, 0.2])
  assert suggest.rank_frames(scores, [0]) == [1, 4, 3, 5, 2]
  assert suggest.rank_frames(scores, [0], min_gap=1) == [4, 3, 5, 2]


def test_evenly_spaced_matches_paper_protocol():
  assert suggest.evenly_spaced(80, 1) == [0]
  assert suggest.evenly_spaced(80, 2) == [0, 40]
  assert suggest.evenly_spaced(80, 4) == [0, 20, 40, 60]
  assert suggest.evenly_spaced(10, 2, first=2) == [2, 6]
