"""Tests for metavos.data.pipeline: lazy videos give the in-memory batches,
for every reader and every sampler; the grain stream from any step is the
uninterrupted stream, in threads and in worker processes."""

import pickle

import ml_collections
from absl import flags
import numpy as np
import pytest
from PIL import Image

from metavos.data import (clips, davis, io, pipeline, sampling, synthetic,
                          tfds_builder, twoshot_clips, youtube_vos)
from metavos.data.errors import DataError
from metavos.methods import train_loop

SIZE = (24, 40)  # training size, smaller than the 48x64 frames: resizing runs


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
  # Three objects, 10 frames: every sampler has tasks, frames and clip starts.
  return synthetic.generate(
      tmp_path_factory.mktemp("pipeline"), num_videos=3, num_frames=10,
      height=48, width=64, max_objects=3, seed=1, splits={"train": 3})


@pytest.fixture(scope="module")
def tfds_root(davis_root, tmp_path_factory):
  out = tmp_path_factory.mktemp("pipeline_tfds")
  tfds_builder.build(davis_root, out, splits=("train",))
  return out


def _datasets(davis_root, tfds_root):
  return {
      "davis": davis.DavisDataset(davis_root, split="train"),
      "tfds": tfds_builder.load_split(tfds_root, "train", 0, 1),
  }


def _samplers(videos):
  return {
      "tasks": sampling.TaskSampler(videos, num_query=3, seed=4),
      "frames": sampling.FrameSampler(videos, seed=4),
      "clips": clips.ClipSampler(videos, 3, 2, 2, seed=4, flip=True,
                                 label_set={v.name: [0, 4, 7] for v in videos}),
      "pairs": twoshot_clips.warmup_sampler(
          videos, {v.name: [2, 6] for v in videos}, 2, seed=4, flip=False),
  }


def _assert_same_batch(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("kind", ["davis", "tfds"])
def test_lazy_videos_give_the_in_memory_batches(davis_root, tfds_root, kind):
  ds = _datasets(davis_root, tfds_root)[kind]
  lazy = pipeline.index_videos(ds, SIZE, threads=2)
  eager = sampling.prepare(davis.DavisDataset(davis_root, split="train"), SIZE)
  assert [v.name for v in lazy] == [v.name for v in eager]
  for v in lazy:
    assert isinstance(v.frames, pipeline.LazyFrames)
    assert v.frames.shape == (10,) + SIZE + (3,)
  lazy_samplers, eager_samplers = _samplers(lazy), _samplers(eager)
  for name, sampler in lazy_samplers.items():
    assert len(sampler) == len(eager_samplers[name]), name
    for step in (0, 3, 11):
      _assert_same_batch(sampler.sample(step, 4, 1, 2),
                         eager_samplers[name].sample(step, 4, 1, 2))


def test_youtube_vos_videos_index_sparse_masks_and_late_objects(tmp_path):
  # Object 2 enters at frame 2; frames 1 and 3 have no mask.
  size = (10, 14)
  for t in range(4):
    frame = np.full(size + (3,), 40 * t, np.uint8)
    path = tmp_path / "train" / "JPEGImages" / "v" / f"{5 * t:05d}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path)
  masks = {0: 1, 2: 2}
  for t, k in masks.items():
    m = np.zeros(size, np.uint8)
    m[2:6, 2 + 4 * (k - 1):5 + 4 * (k - 1)] = k
    io.write_mask_png(tmp_path / "train" / "Annotations" / "v" /
                      f"{5 * t:05d}.png", m)
  ds = youtube_vos.YouTubeVOSDataset(tmp_path, "train")
  (lazy,) = pipeline.index_videos(ds, size)
  (eager,) = sampling.prepare(ds, size)
  assert lazy.annotated.tolist() == [True, False, True, False]
  assert lazy.object_ids == (1, 2)
  assert [lazy.objects_at(t) for t in range(4)] == [
      eager.objects_at(t) for t in range(4)] == [{1}, set(), {2}, set()]
  np.testing.assert_array_equal(lazy.masks[[0, 1, 2]], eager.masks[[0, 1, 2]])
  np.testing.assert_array_equal(lazy.frames[3], eager.frames[3])


def test_index_keeps_no_pixels(davis_root):
  lazy = pipeline.index_videos(davis.DavisDataset(davis_root, split="train"),
                               SIZE)
  pixels = sum(v.frames.shape[0] * np.prod(SIZE) * 4 for v in lazy)
  # What a worker process receives: keys, flags and object sets, no frames.
  assert len(pickle.dumps(lazy)) < pixels / 4


def test_take_keeps_frames_lazy_and_in_order(davis_root):
  (v, *_) = pipeline.index_videos(
      davis.DavisDataset(davis_root, split="train"), SIZE)
  sub = v.take([7, 2])
  assert isinstance(sub.frames, pipeline.LazyFrames)
  np.testing.assert_array_equal(sub.frames[[0, 1]], v.frames[[7, 2]])
  assert sub.objects_at(0) == v.objects_at(7)
  assert sub.annotated.tolist() == [True, True]


@pytest.mark.parametrize("threads,workers", [(0, 0), (2, 0), (1, 2)])
def test_stream_from_any_step_is_the_uninterrupted_stream(davis_root, threads,
                                                          workers):
  videos = pipeline.index_videos(
      davis.DavisDataset(davis_root, split="train"), SIZE)
  sample = train_loop.batch_sampler(
      clips.ClipSampler(videos, 3, 2, 2, seed=0, flip=True), 2)
  loader = ml_collections.ConfigDict(
      dict(threads=threads, workers=workers, prefetch=2))
  resumed = list(pipeline.batches(sample, 5, 9, loader))
  assert len(resumed) == 4
  for step, batch in zip(range(5, 9), resumed):
    _assert_same_batch(batch, sample(step))
  # Different steps, different clips: the stream really moves with the step.
  assert not np.array_equal(resumed[0]["frames"], resumed[1]["frames"])
  # Worker processes did not mark absl's flags parsed for the whole process
  # (absl logging would then write elsewhere).
  assert not flags.FLAGS.is_parsed()


def test_negative_loader_settings_are_refused():
  with pytest.raises(ValueError, match="config.data.loader"):
    pipeline.batches(lambda s: {}, 0, 1, ml_collections.ConfigDict(
        dict(threads=-1, workers=0, prefetch=1)))


def _broken_at_3(step):
  if step == 3:
    raise DataError("/data/v/00003.jpg", "corrupt or truncated image",
                    "re-extract the frame")
  return {"step": np.int32(step)}


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_frame_in_a_loader_thread_or_worker_surfaces_in_order(workers):
  # A file damaged after start-up: the steps before it are delivered, then
  # the reader's DataError (file and fix) reaches the training loop.
  stream = pipeline.batches(_broken_at_3, 0, 6, ml_collections.ConfigDict(
      dict(threads=2, workers=workers, prefetch=2)))
  assert [int(next(stream)["step"]) for _ in range(3)] == [0, 1, 2]
  with pytest.raises(DataError, match="00003.jpg.*re-extract the frame"):
    next(stream)
