"""Training data as a stream: an index of the split, frames decoded on demand,
and the grain loader every method trains from.

Three layers, the same for e-OSVOS tasks, OSVOS parent frames and
memory-network clips:

  index   `index_videos`: one pass over the split reads every mask and only
          the headers of the frames (the DAVIS/YouTube-VOS rules are checked
          as loading would). What it keeps per video is small: the frame and
          mask keys, the annotated flags, the objects, and which objects
          each frame shows at training size. No pixels: memory grows with
          the number of frames, by bytes, not by images.
  frames  `LazyFrames`: a video's frames or masks at training size, read and
          resized only when a sampler indexes them, through the dataset's
          `frame_reader()` (files, or TFDS array_record records). The
          samplers of `sampling`, `clips` and `twoshot_clips` index them
          exactly as they index in-memory arrays.
  stream  `batches`: a grain `MapDataset` over training steps whose element
          `step` is `sample(step)`, this process's share of the step's
          global batch. Samplers are pure functions of (seed, step,
          process), so the stream starting at the restored step is the
          uninterrupted run's stream (the data position is the step; the
          checkpoint records it). grain decodes ahead in threads
          (`config.data.loader.threads`) or worker processes (`.workers`)
          with a bounded prefetch buffer (`.prefetch` steps).

Each host reads only its share: samplers draw this process's slice of the
batch, so the frames a host decodes are those of its slice.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent import futures
from typing import Any, Callable, Iterator, Protocol, Sequence

import grain
import ml_collections
import numpy as np
from absl import flags, logging

from metavos.data import davis, sampling
from metavos.data.sampling import TrainVideo


class FrameReader(Protocol):
  """A dataset's random access to one frame or mask (`frame_reader()`)."""

  def image(self, key: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""

  def mask(self, key: str) -> np.ndarray:
    """(H, W) uint8 object ids, 255 = void."""


@dataclasses.dataclass(frozen=True)
class LazyFrames:
  """A video's frames (`kind="image"`) or masks (`"mask"`) at training size,
  decoded when indexed.

  Indexing with an int gives one (H, W, 3) frame or (H, W) mask; with a
  sequence of ints, a stacked array, as numpy indexing would. Frames are
  resized bilinearly and masks by nearest neighbour, frame by frame, with
  the functions `sampling.prepare` resizes in-memory videos with, so a sampler
  draws the same pixels from a `LazyFrames` as from the in-memory arrays.
  A mask key of None (an unannotated frame) reads as zeros.

  Attributes:
    reader: the dataset's `frame_reader()`.
    keys: one key per frame (None: no mask).
    size: (H, W) training size.
    kind: "image" or "mask".
  """
  reader: FrameReader
  keys: tuple[str | None, ...]
  size: tuple[int, int]
  kind: str

  @property
  def shape(self) -> tuple[int, ...]:
    return ((len(self.keys),) + tuple(self.size)
            + ((3,) if self.kind == "image" else ()))

  def __len__(self) -> int:
    return len(self.keys)

  def _one(self, t: int) -> np.ndarray:
    key = self.keys[t]
    if self.kind == "image":
      return sampling.resize_frame(self.reader.image(key), self.size)
    if key is None:
      return np.zeros(self.size, np.uint8)
    return sampling.resize_mask(self.reader.mask(key), self.size)

  def __getitem__(self, index) -> np.ndarray:
    if np.ndim(index) == 0:
      return self._one(int(index))
    return np.stack([self._one(int(t)) for t in np.asarray(index)])

  def take(self, indices: Sequence[int], axis: int = 0) -> LazyFrames:
    """The frames `indices`, still lazy (numpy's `take` along time)."""
    if axis != 0:
      raise ValueError("LazyFrames.take: only axis 0 (time)")
    return dataclasses.replace(
        self, keys=tuple(self.keys[int(t)] for t in indices))


def index_video(dataset, name: str, size: tuple[int, int]) -> TrainVideo:
  """One sequence of `dataset` as a lazy `TrainVideo` (see module doc).

  Args:
    dataset: a `datasets.get_dataset` dataset (with `load(name,
      headers_only=True)`, `frame_files` and `frame_reader`).
    name: the sequence.
    size: (H, W) training size.

  Raises:
    DataError: whatever loading the sequence would raise.
  """
  video = dataset.load(name, headers_only=True)
  files = dataset.frame_files(name)
  masks = [sampling.resize_mask(m, size) for m in video.masks]
  reader = dataset.frame_reader()
  return TrainVideo(
      name, LazyFrames(reader, tuple(f.image for f in files), size, "image"),
      LazyFrames(reader, tuple(f.mask for f in files), size, "mask"),
      np.asarray(video.annotated), tuple(video.object_ids),
      tuple(frozenset(davis.object_ids_in(m)) for m in masks))


def index_videos(dataset, size: tuple[int, int],
                 threads: int = 1) -> list[TrainVideo]:
  """Every sequence of `dataset` (in order) through `index_video`, in
  `threads` threads (mask decoding releases the GIL)."""
  start = time.perf_counter()
  one = lambda name: index_video(dataset, name, tuple(size))
  with futures.ThreadPoolExecutor(max(threads, 1)) as pool:
    videos = list(pool.map(one, dataset.sequences))
  logging.info("Indexed %d training videos (%d frames) in %.1f s; frames are "
               "decoded as batches need them.", len(videos),
               sum(len(v.annotated) for v in videos),
               time.perf_counter() - start)
  return videos


def batches(sample: Callable[[int], dict], start: int, stop: int,
            loader: ml_collections.ConfigDict | None = None
            ) -> Iterator[dict[str, Any]]:
  """The batches of steps `start .. stop-1`, in order, read ahead by grain.

  Args:
    sample: `step -> this process's batch`, a pure function of the step
      (picklable when `loader.workers` > 0).
    start: first step (the restored step of a resumed run).
    stop: one past the last step.
    loader: `config.data.loader` (threads, workers, prefetch; see
      configs/common.py); None = decode in the calling thread.

  Returns:
    An iterator of `sample(start)`, `sample(start + 1)`, ...
  """
  if loader is None:
    return iter(grain.MapDataset.range(start, stop).map(sample))
  if min(loader.threads, loader.workers, loader.prefetch) < 0:
    raise ValueError("config.data.loader: threads, workers and prefetch must "
                     "be >= 0")
  steps = grain.MapDataset.range(start, stop).map(sample)
  if loader.threads == 0 and loader.workers == 0:
    return iter(steps)
  stream = steps.to_iter_dataset(grain.ReadOptions(
      num_threads=max(loader.threads, 1),
      prefetch_buffer_size=max(loader.prefetch, 1)))
  if loader.workers:
    _grain_flags_readable()
    stream = stream.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=loader.workers,
        per_worker_buffer_size=max(loader.prefetch, 1)))
  return iter(stream)


def _grain_flags_readable() -> None:
  """grain reads its absl flags when it starts worker processes. Imported
  from a notebook or a test, nothing parsed them: mark grain's own flags as
  given (at their defaults). Not `FLAGS.mark_as_parsed()`: that would also
  change where absl logging writes for the whole process."""
  if flags.FLAGS.is_parsed():
    return
  for name in list(flags.FLAGS):
    if name.startswith("grain_"):
      flags.FLAGS[name].present = max(flags.FLAGS[name].present, 1)
