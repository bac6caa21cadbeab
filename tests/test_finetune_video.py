"""Video segmentation by fine-tuning: merging, chunking, all objects at once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.data import davis
from metavos.finetune import video as video_lib
from metavos.models import interface


def test_merge_objects_argmax_with_background_threshold():
  probs = np.array([[[0.9, 0.3, 0.6]], [[0.8, 0.4, 0.7]]])  # (K=2, 1, 3)
  ids = video_lib.merge_objects(probs, [3, 7], bg_threshold=0.5)
  np.testing.assert_array_equal(ids, [[3, 0, 7]])
  assert ids.dtype == np.uint8


def _pixel_apply(params, images):
  """A 1x1 'network': logit = w . rgb + b (enough to separate colours)."""
  return (images @ params["w"])[..., None] + params["b"]


_pixel_model = interface.dense_model(_pixel_apply)


def _cfg(**kw):
  base = dict(num_steps=6, momentum=0.0, loss="bce", copies=1, augment=None,
              unroll=True, steps_per_call=6, frames_per_call=4)
  base.update(kw)
  return video_lib.FinetuneConfig(**base)


def test_segments_two_objects_from_first_frame(synthetic_root):
  video = davis.DavisDataset(synthetic_root, split="val").load(
      davis.DavisDataset(synthetic_root, split="val").sequences[0])
  params = {"w": jnp.zeros((3,)), "b": jnp.zeros(())}
  seg = video_lib.VideoSegmenter(_pixel_model, _cfg())
  pred, stats = seg.segment(params, jnp.asarray(0.5), video,
                            jax.random.key(0))
  assert pred.shape == video.masks.shape and pred.dtype == np.uint8
  # The annotated first frame is returned as given.
  np.testing.assert_array_equal(pred[0], video.masks[0])
  assert set(np.unique(pred)) <= {0, *video.object_ids}
  assert stats["fps"] > 0 and stats["finetune_seconds"] >= 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_chunked_adaptation_equals_one_call(optimizer):
  rng = np.random.default_rng(0)
  images = rng.random((2, 1, 8, 8, 3), np.float32)  # K=2 objects, N=1 frame
  masks = (images[..., 0] > 0.5).astype(np.float32)
  valid = np.ones_like(masks, bool)
  params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros((2,))}
  one = video_lib.VideoSegmenter(_pixel_model, _cfg(momentum=0.9,
                                                    optimizer=optimizer))
  chunked = video_lib.VideoSegmenter(
      _pixel_model, _cfg(momentum=0.9, steps_per_call=4, optimizer=optimizer))
  # Chunks draw keys per chunk; without augmentation the keys do not matter.
  p1, l1 = one.adapt(params, jnp.asarray(0.3), images, masks, valid,
                     jax.random.key(0), 6)
  p2, l2 = chunked.adapt(params, jnp.asarray(0.3), images, masks, valid,
                         jax.random.key(0), 6)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert l1.shape == l2.shape == (2, 6)
  assert float(l1[:, -1].mean()) < float(l1[:, 0].mean())


def test_objects_adapt_independently():
  """Vmapped adaptation of K objects equals K separate adaptations."""
  rng = np.random.default_rng(1)
  images = rng.random((3, 1, 8, 8, 3), np.float32)
  masks = (images[..., 1] > 0.4).astype(np.float32)
  valid = np.ones_like(masks, bool)
  seg = video_lib.VideoSegmenter(_pixel_model, _cfg())
  params = {"w": jnp.zeros((3, 3)), "b": jnp.zeros((3,))}
  together, _ = seg.adapt(params, jnp.asarray(0.5), images, masks, valid,
                          jax.random.key(0), 6)
  for i in range(3):
    alone, _ = seg.adapt(jax.tree.map(lambda x: x[i:i + 1], params),
                         jnp.asarray(0.5), images[i:i + 1], masks[i:i + 1],
                         valid[i:i + 1], jax.random.key(0), 6)
    np.testing.assert_allclose(together["w"][i], alone["w"][0], rtol=1e-5)


def test_online_adaptation_runs_and_is_a_no_op_at_rate_zero(synthetic_root):
  ds = davis.DavisDataset(synthetic_root, split="val")
  video = ds.load(ds.sequences[0])
  params = {"w": jnp.array([1.0, -1.0, 0.5]), "b": jnp.zeros(())}
  plain = video_lib.VideoSegmenter(_pixel_model, _cfg())
  online = video_lib.VideoSegmenter(
      _pixel_model, _cfg(online_interval=2, online_steps=3, online_recent=1))
  key = jax.random.key(0)
  # Rate 0: re-adapting changes nothing, so predictions are identical.
  p0 = plain.predict(params, jnp.asarray(0.0), video, key)[0]
  p1, _, stats = online.predict(params, jnp.asarray(0.0), video, key)
  np.testing.assert_allclose(p0, p1, atol=1e-6)
  assert stats["online_seconds"] > 0
  # A real rate: the online updates move the later frames' predictions.
  q0 = plain.predict(params, jnp.asarray(2.0), video, key)[0]
  q1 = online.predict(params, jnp.asarray(2.0), video, key)[0]
  assert np.abs(q0[:, 2:] - q1[:, 2:]).max() > 1e-4
  np.testing.assert_allclose(q0[:, :2], q1[:, :2], atol=1e-6)


def _counting_model():
  """A stateful model whose state counts the frames it has segmented since
  the object's annotated frame (where its state starts at the mask's sum)."""
  def predict(params, state, frames, rng):
    del params, rng
    def step(count, frame):
      return count + 1.0, jnp.full(frame.shape[:2], count)
    state, probs = jax.lax.scan(step, state, frames)
    return probs, state
  return interface.VOSModel(
      make_loss=lambda pixel_loss: (
          lambda p, img, msk, val, rng: jnp.sum(p["b"]) * 0.0),
      init_state=lambda mask: jnp.zeros(()), predict=predict)


def test_state_is_carried_across_calls_and_reset_where_an_object_enters(
    synthetic_root):
  ds = davis.DavisDataset(synthetic_root, split="val")
  video = ds.load(ds.sequences[0])
  video.first_frame[video.object_ids[1]] = 3  # the second object enters late
  seg = video_lib.VideoSegmenter(_counting_model(), _cfg(frames_per_call=2))
  probs, _, _ = seg.predict({"b": jnp.zeros(())}, jnp.asarray(0.0), video,
                            jax.random.key(0))
  # Carried from call to call (2 frames each): frame t has seen t frames.
  np.testing.assert_allclose(probs[0, :, 0, 0], np.arange(6))
  # Reset at frame 3 for the late object; zero before it exists.
  np.testing.assert_allclose(probs[1, :, 0, 0], [0, 0, 0, 0, 1, 2])


@pytest.mark.parametrize("per_call", [1, 2])
def test_objects_per_call_does_not_change_the_result(per_call):
  """Adapting 3 objects in calls of 1 or 2 equals one vmapped call, with
  augmentation on (each object keeps its own random stream) and momentum."""
  rng = np.random.default_rng(2)
  images = rng.random((3, 1, 16, 16, 3), np.float32)
  masks = (images[..., 2] > 0.5).astype(np.float32)
  valid = np.ones_like(masks, bool)
  params = {"w": jnp.zeros((3, 3)), "b": jnp.zeros((3,))}
  aug = (("flip", True), ("max_rotation_deg", 30.0),
         ("scale_range", (0.75, 1.25)))
  kw = dict(momentum=0.9, augment=aug, copies=2, steps_per_call=3)
  all_at_once = video_lib.VideoSegmenter(_pixel_model, _cfg(**kw))
  split = video_lib.VideoSegmenter(
      _pixel_model, _cfg(objects_per_call=per_call, **kw))
  p1, l1 = all_at_once.adapt(params, jnp.asarray(0.3), images, masks, valid,
                             jax.random.key(3), 6)
  p2, l2 = split.adapt(params, jnp.asarray(0.3), images, masks, valid,
                       jax.random.key(3), 6)
  # Each object's arithmetic is the same in either split; only how XLA
  # vectorises it may differ, reassociating the 512-pixel loss and gradient
  # sums (sqrt(512) eps ~ 1.3e-6 relative per step, over 6 steps): rtol
  # 1e-5 relative to the parameters' scale (0.2-0.5 here). Measured on the
  # 2-core AMD box: bit-identical.
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(
        np.abs(b).max()))
  np.testing.assert_allclose(l1, l2, rtol=1e-5)
  assert float(jnp.abs(p1["w"][0] - p1["w"][1]).max()) > 0  # objects differ


def test_objects_per_call_gives_the_same_video_probabilities(synthetic_root):
  ds = davis.DavisDataset(synthetic_root, split="val")
  video = ds.load(ds.sequences[0])
  assert len(video.object_ids) == 2
  params = {"w": jnp.zeros((3,)), "b": jnp.zeros(())}
  aug = (("flip", True), ("max_rotation_deg", 30.0),
         ("scale_range", (0.75, 1.25)))
  probs = [video_lib.VideoSegmenter(
      _pixel_model, _cfg(objects_per_call=n, augment=aug, copies=2,
                         online_interval=3, online_steps=2)).predict(
                             params, jnp.asarray(0.5), video,
                             jax.random.key(0))[0]
           for n in (0, 1)]
  np.testing.assert_allclose(probs[0], probs[1], rtol=1e-5, atol=1e-6)
  assert probs[0].std() > 0


def test_zero_steps_segments_with_the_starting_parameters(synthetic_root):
  """finetune.num_steps=0 (the parent network as it is) is a valid setting."""
  ds = davis.DavisDataset(synthetic_root, split="val")
  video = ds.load(ds.sequences[0])
  params = {"w": jnp.asarray([1.0, -1.0, 0.0]), "b": jnp.zeros(())}
  seg = video_lib.VideoSegmenter(_pixel_model, _cfg(num_steps=0))
  probs, _, stats = seg.predict(params, jnp.asarray(0.5), video,
                                jax.random.key(0))
  frame = video.frames[1].astype(np.float32) / 255.0
  want = jax.nn.sigmoid(frame @ np.asarray([1.0, -1.0, 0.0]))
  np.testing.assert_allclose(probs[0, 1], want, atol=1e-5)
  assert "final_support_loss" not in stats


def test_segmenters_of_one_model_and_config_share_compilations():
  """The compiled pieces are pure functions of the static (model, cfg): a
  second segmenter compiles nothing new, and none is kept alive by the
  jit cache."""
  import gc  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  images = rng.random((2, 1, 8, 8, 3), np.float32)
  masks = (images[..., 0] > 0.5).astype(np.float32)
  valid = np.ones_like(masks, bool)
  params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros((2,))}
  cfg = _cfg(num_steps=2, steps_per_call=2, momentum=0.5)

  def adapt_with_a_new_segmenter():
    seg = video_lib.VideoSegmenter(_pixel_model, cfg)
    out = seg.adapt(params, jnp.asarray(0.3), images, masks, valid,
                    jax.random.key(0), 2)
    return weakref.ref(seg), out

  first_ref, first = adapt_with_a_new_segmenter()
  compiled = video_lib._adapt._cache_size()  # pylint: disable=protected-access
  second_ref, second = adapt_with_a_new_segmenter()
  assert video_lib._adapt._cache_size() == compiled  # pylint: disable=protected-access
  jax.tree.map(np.testing.assert_array_equal, first, second)
  gc.collect()
  assert first_ref() is None and second_ref() is None


def test_undo_balance_maps_each_object_to_its_annotated_share(synthetic_root):
  ds = davis.DavisDataset(synthetic_root, split="val")
  video = ds.load(ds.sequences[0])
  params = {"w": jnp.asarray([1.0, -1.0, 0.0]), "b": jnp.zeros(())}
  kw = dict(num_steps=0, loss="balanced_bce_mean")
  plain, _, _ = video_lib.VideoSegmenter(_pixel_model, _cfg(**kw)).predict(
      params, jnp.asarray(0.5), video, jax.random.key(0))
  undone, _, _ = video_lib.VideoSegmenter(
      _pixel_model, _cfg(undo_balance=True, **kw)).predict(
          params, jnp.asarray(0.5), video, jax.random.key(0))
  for i, o in enumerate(video.object_ids):
    t = video.first_frame[o]
    share = np.mean(video.masks[t] == o)
    assert 0 < share < 0.5
    want = plain[i, t:] * share / (plain[i, t:] * share
                                   + (1 - plain[i, t:]) * (1 - share))
    np.testing.assert_allclose(undone[i, t:], want, rtol=1e-4, atol=1e-6)
    # A small object's probabilities go down: fewer pixels pass 0.5.
    assert (undone[i, t:] >= 0.5).sum() < (plain[i, t:] >= 0.5).sum()


def test_undo_balance_needs_a_balanced_loss():
  with pytest.raises(ValueError, match="'bce' is not one of"):
    video_lib.VideoSegmenter(_pixel_model, _cfg(undo_balance=True))
