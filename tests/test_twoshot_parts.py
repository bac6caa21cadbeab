"""Two-shot building blocks: EMA teacher, confidence masking, the
nearest-labelled-frame merge, pseudo-label files, clip samplers."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.data import clips, davis, sampling, twoshot_clips
from metavos.data.types import VOID
from metavos.memory import confidence, propagate, pseudo_labels
from metavos.memory import teacher


def test_ema_alpha_hand_values():
  # min(1 - 1/(t+1), 0.995): 0, 1/2, 2/3, 0.9 at t=9, capped from t=199 on.
  got = teacher.ema_alpha(jnp.array([0, 1, 2, 9, 199, 10_000]))
  np.testing.assert_allclose(got, [0.0, 0.5, 2 / 3, 0.9, 0.995, 0.995],
                             rtol=1e-6)
  assert float(teacher.ema_alpha(3, alpha_max=0.5)) == 0.5


def test_ema_update_hand_values():
  t = {"w": jnp.array([1.0, 2.0]), "b": {"x": jnp.array(4.0)}}
  s = {"w": jnp.array([3.0, 6.0]), "b": {"x": jnp.array(0.0)}}
  # step 1: alpha 1/2 -> the mean; step 0: alpha 0 -> the student.
  out = teacher.ema_update(t, s, 1)
  np.testing.assert_allclose(out["w"], [2.0, 4.0])
  np.testing.assert_allclose(out["b"]["x"], 2.0)
  np.testing.assert_allclose(teacher.ema_update(t, s, 0)["w"], s["w"])
  # step 999 (capped, alpha 0.995): 0.995 * 1 + 0.005 * 3 = 1.01.
  capped = jax.jit(teacher.ema_update)(t, s, jnp.int32(999))
  np.testing.assert_allclose(capped["w"][0], 1.01, rtol=1e-6)


def _probs(fg):
  """(K+1=3, 1, 3) probabilities: background, object 1, object 2."""
  fg = np.asarray(fg, np.float32)  # (2, 1, 3) object probabilities
  return jnp.asarray(np.concatenate([1.0 - fg.sum(0, keepdims=True), fg]))


def test_confidence_keeps_only_confident_pixels_of_unlabelled_frames():
  # Pixel 0: object 1 at 0.95; pixel 1: object 2 at 0.6; pixel 2:
  # background at 0.92. Frame 0 unlabelled, frame 1 labelled.
  p = _probs([[[0.95, 0.1, 0.03]], [[0.02, 0.6, 0.05]]])
  probs = jnp.stack([p, p])
  masks = jnp.zeros((2, 2, 1, 3)).at[1, 1, 0, 0].set(1.0)  # real: object 2
  valid = jnp.array([[[False] * 3], [[True, True, False]]])  # (2, 1, 3)
  labelled = jnp.array([False, True])
  m, v = confidence.pseudo_supervise(probs, masks, valid, labelled, 0.9)
  # Unlabelled frame: pixel 1 (0.6 < 0.9) stays ignored; pixel 0 becomes
  # object 1; pixel 2 becomes confident background (valid, all zero).
  np.testing.assert_array_equal(v[0], [[True, False, True]])
  np.testing.assert_array_equal(m[0, :, 0], [[1, 0, 0], [0, 0, 0]])
  # The labelled frame is untouched although the prediction disagrees
  # (object 1 at 0.95 where the label says object 2) and pixel 2 stays void.
  np.testing.assert_array_equal(m[1], masks[1])
  np.testing.assert_array_equal(v[1], valid[1])
  # A lower threshold takes pixel 1 too; the threshold is inclusive.
  _, v2 = confidence.pseudo_supervise(probs, masks, valid, labelled, 0.6)
  np.testing.assert_array_equal(v2[0], [[True, True, True]])
  assert float(confidence.confident_fraction(probs, labelled, 0.9)) == (
      pytest.approx(2 / 3))


def test_confidence_replaces_pseudo_labels_where_confident():
  # Phase 2: the pseudo-label (object 2 everywhere) of an unlabelled frame
  # is replaced only at the confident pixels; nothing becomes invalid.
  p = _probs([[[0.995, 0.5, 0.001]], [[0.001, 0.3, 0.001]]])[None]
  pseudo = jnp.zeros((1, 2, 1, 3)).at[0, 1].set(1.0)
  valid = jnp.ones((1, 1, 3), bool)
  m, v = confidence.pseudo_supervise(p, pseudo, valid, jnp.array([False]),
                                     0.99)
  np.testing.assert_array_equal(m[0, :, 0], [[1, 0, 0], [0, 1, 0]])
  assert bool(v.all())


def test_merge_takes_the_nearest_labelled_frame():
  # Two labelled frames 1 and 6 of 9: frames 0-3 from frame 1 (3.5 ties to
  # the earlier one), 4-8 from frame 6; the argument order does not matter.
  t = 9
  a, b = np.full((1, t), 1.0), np.full((1, t), 6.0)
  np.testing.assert_array_equal(
      propagate.merge_nearest([a, b], [1, 6])[0], [1, 1, 1, 1, 6, 6, 6, 6, 6])
  np.testing.assert_array_equal(
      propagate.merge_nearest([b, a], [6, 1])[0], [1, 1, 1, 1, 6, 6, 6, 6, 6])
  np.testing.assert_array_equal(propagate.nearest_annotated(8, [1, 6]),
                                [0, 0, 0, 0, 1, 1, 1, 1])


def test_restrict_to_labels_hides_other_masks(synthetic_root):
  video = davis.DavisDataset(synthetic_root, split="train").load(
      "synthetic-000")
  sparse = pseudo_labels.restrict_to_labels(video, [4, 2])
  np.testing.assert_array_equal(np.flatnonzero(sparse.annotated), [2, 4])
  assert not sparse.masks[[0, 1, 3, 5]].any()
  np.testing.assert_array_equal(sparse.masks[[2, 4]], video.masks[[2, 4]])
  seen = davis.object_ids_in(video.masks[2]) | davis.object_ids_in(
      video.masks[4])
  assert set(sparse.object_ids) == seen
  assert min(sparse.first_frame.values()) == 2


def test_pseudo_root_is_a_davis_dataset(synthetic_root, tmp_path):
  ds = davis.DavisDataset(synthetic_root, split="train")
  out = pseudo_labels.PseudoRoot(tmp_path / "pl", "480p", 2017, "train")
  rng = np.random.default_rng(0)
  written = {}
  for name in ds.sequences:
    video = ds.load(name)
    pred = rng.integers(0, 3, video.masks.shape).astype(np.uint8)
    pred[0] = 0  # An empty first pseudo-label must still be readable.
    out.write_video(video, pred, synthetic_root / "JPEGImages" / "480p" / name)
    written[name] = (video, pred)
  assert not out.is_complete()
  out.finish(list(written))
  assert out.is_complete()
  back = out.open()
  assert back.sequences == ds.sequences
  for name, (video, pred) in written.items():
    got = back.load(name)
    np.testing.assert_array_equal(got.masks, pred)
    np.testing.assert_array_equal(got.frames, video.frames)  # linked frames
    assert got.annotated.all() and got.object_ids == (1, 2)
    assert got.first_frame[1] >= 1


def _video(name, num, labelled_masks):
  masks = np.zeros((num, 8, 8), np.uint8)
  masks[:, 2:5, 2:5] = 1
  masks[:, 0, 0] = VOID
  return sampling.TrainVideo(name, np.zeros((num, 8, 8, 3), np.uint8), masks,
                             np.asarray(labelled_masks), (1,))


def test_warmup_pairs_are_labelled_frames_only():
  videos = [_video("a", 10, [True] * 10), _video("b", 6, [True] * 6)]
  label_set = {"a": [2, 7], "b": [5]}  # b has one labelled frame: left out
  sampler = twoshot_clips.warmup_sampler(videos, label_set, 1, 0, False)
  assert [v.name for v in sampler.videos] == ["a"]
  batch = sampler.sample(0, 8)
  assert batch["frames"].shape[1] == 2 and batch["labelled"].all()
  assert batch["valid"][:, :, 3, 3].all()
  assert not batch["valid"][:, :, 0, 0].any()  # void stays unscored
  # Both orders appear: frame 2 -> 7 and 7 -> 2 (indices into the pair).
  assert {tuple(x) for x in batch["frame_index"]} == {(0, 1), (1, 0)}
  with pytest.raises(ValueError, match="two labelled"):
    twoshot_clips.warmup_sampler(videos, {"a": [2]}, 1, 0, False)


def test_real_label_flags_name_only_real_labels():
  videos = [_video("a", 12, [True] * 12)]
  inner = clips.ClipSampler(videos, 3, 4, 1, 0, None, True)
  flagged = twoshot_clips.RealLabelFlags(inner, {"a": [0, 9]})
  for step in range(5):
    batch, plain = flagged.sample(step, 4), inner.sample(step, 4)
    np.testing.assert_array_equal(batch["masks"], plain["masks"])
    want = np.isin(batch["frame_index"], [0, 9])
    np.testing.assert_array_equal(batch["labelled"], want)


def test_labelled_pairs_ride_beside_the_teacher_clips():
  videos = [_video("a", 12, [True] * 12), _video("b", 10, [True] * 10)]
  label_set = {"a": [0, 9], "b": [3, 7]}
  inner = clips.ClipSampler(videos, 3, 2, 1, 0, label_set, False)
  pairs = twoshot_clips.warmup_sampler(videos, label_set, 1, 5, False)
  both = twoshot_clips.WithLabelledPairs(inner, pairs, 4)
  assert len(both) == len(inner)
  for step in range(3):
    batch = both.sample(step, 2)
    # The teacher's clips are unchanged; the pairs are extra, 4 a step.
    for k, v in inner.sample(step, 2).items():
      np.testing.assert_array_equal(batch["clips"][k], v, err_msg=k)
    got = batch["pairs"]
    assert got["frames"].shape[:2] == (4, 2) and got["labelled"].all()
    assert got["valid"][:, :, 3, 3].all()  # both frames carry real masks
  # Each of 2 processes draws its half of the clips and of the pairs.
  half = both.sample(1, 2, process_index=1, process_count=2)
  assert half["clips"]["frames"].shape[0] == 1
  np.testing.assert_array_equal(half["pairs"]["frame_index"],
                                pairs.sample(1, 4, 1, 2)["frame_index"])
  with pytest.raises(ValueError, match="not divisible"):
    twoshot_clips.WithLabelledPairs(inner, pairs, 3).sample(0, 2, 0, 2)
  with pytest.raises(ValueError, match="anchor_pairs"):
    twoshot_clips.WithLabelledPairs(inner, pairs, 0)
