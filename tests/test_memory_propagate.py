"""Inference propagation: direction symmetry, parity with the training
chain, nearest-annotated merge, and the segmenter contract."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _toy_memory import tiny_stcn
from metavos.data import davis
from metavos.memory import chain, propagate


pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def net(fast_compile):
  del fast_compile
  return tiny_stcn()


@pytest.fixture(scope="module")
def video(synthetic_root):
  ds = davis.DavisDataset(synthetic_root, split="val")
  return ds.load(ds.sequences[0])


def _inputs(video):
  frames = video.frames.astype(np.float32) / 255.0
  ids = np.asarray(video.object_ids)[:, None, None]
  return frames, (video.masks[0][None] == ids).astype(np.float32)


CFG = propagate.PropagateConfig(mem_every=2, max_memory=3, top_k=4)


def test_backward_on_the_reversed_video_equals_forward(net, video):
  fns, params = net
  frames, m0 = _inputs(video)
  t = len(frames)
  k = m0.shape[0]
  fwd = propagate.propagate(fns, params, frames, range(t),
                            {0: (m0, np.ones(k, bool))}, CFG)
  bwd = propagate.propagate(fns, params, frames[::-1].copy(),
                            range(t - 1, -1, -1),
                            {t - 1: (m0, np.ones(k, bool))}, CFG)
  np.testing.assert_allclose(bwd[:, ::-1], fwd, rtol=1e-5, atol=1e-6)
  assert float(np.abs(fwd[:, 1:]).max()) > 0


def test_propagation_with_all_frames_in_memory_equals_the_chain(net, video):
  fns, params = net
  frames, m0 = _inputs(video)
  cfg = propagate.PropagateConfig(mem_every=1, max_memory=len(frames),
                                  top_k=None)
  got = propagate.propagate(fns, params, frames, range(len(frames)),
                            {0: (m0, np.ones(m0.shape[0], bool))}, cfg)
  want = jax.jit(lambda: chain.run_chain(
      fns, params, jnp.asarray(frames[0]), jnp.asarray(m0),
      jnp.asarray(frames[1:])).probs)()
  np.testing.assert_allclose(got[:, 1:], np.moveaxis(want[:, 1:], 0, 1),
                             rtol=1e-4, atol=1e-5)


def test_nearest_annotated_merge_by_hand():
  near = propagate.nearest_annotated(7, [5, 1])  # indices into [5, 1]
  np.testing.assert_array_equal(near, [1, 1, 1, 1, 0, 0, 0])  # tie -> frame 1
  runs = [np.full((2, 7, 1), 50.0), np.full((2, 7, 1), 10.0)]
  merged = propagate.merge_nearest(runs, [5, 1])
  np.testing.assert_array_equal(merged[0, :, 0], [10, 10, 10, 10, 50, 50, 50])


def test_segmenter_contract_and_objects_that_enter_later(net, video):
  fns, params = net
  seg = propagate.MemorySegmenter(fns, params, CFG)
  pred, stats = seg.segment(video, jax.random.key(0))
  assert pred.shape == video.masks.shape and pred.dtype == np.uint8
  np.testing.assert_array_equal(pred[0], video.masks[0])
  assert stats["fps"] > 0 and stats["seconds"] > 0
  # Object 2 first annotated at frame 3: nothing before, its mask at 3.
  masks = video.masks.copy()
  masks[:3][masks[:3] == 2] = 0
  late = dataclasses.replace(video, masks=masks,
                             first_frame={1: 0, 2: 3})
  probs, support, _ = seg.predict(late, None)
  assert support == [0, 3]
  assert float(np.abs(probs[1, :3]).max()) == 0.0
  np.testing.assert_allclose(probs[1, 3], masks[3] == 2, atol=1e-6)
  # Two annotated frames: both keep their ground truth.
  pred2, _ = seg.segment(video, None, annotated_frames=[0, 4])
  np.testing.assert_array_equal(pred2[[0, 4]], video.masks[[0, 4]])
