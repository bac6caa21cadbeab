"""Training samples drawn from videos: e-OSVOS tasks and OSVOS parent frames.

Every sampler is a pure function of (seed, step, process): a resumed run that
restores `step` sees exactly the batches an uninterrupted run would have seen,
and each JAX process draws only its own slice of the global batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from metavos.data.types import VOID, Video


@dataclasses.dataclass(frozen=True)
class TrainVideo:
  """A video at the training resolution.

  Attributes:
    name: sequence name.
    frames: (T, H, W, 3) uint8: an array, or `pipeline.LazyFrames` that
      decode the frames a sampler indexes.
    masks: (T, H, W) uint8 object ids, 255 = void (array or LazyFrames).
    annotated: (T,) bool.
    object_ids: ids to build tasks for.
    presence: per frame, the ids its mask shows at this size; None =
      computed from `masks` when asked (`objects_at`).
  """
  name: str
  frames: Any
  masks: Any
  annotated: np.ndarray
  object_ids: tuple[int, ...]
  presence: tuple[frozenset[int], ...] | None = None

  def objects_at(self, t: int) -> frozenset[int]:
    """Ids of the objects frame t shows (background and void excluded)."""
    if self.presence is not None:
      return self.presence[t]
    return frozenset(int(i) for i in np.unique(self.masks[t])) - {0, VOID}

  def take(self, indices: Sequence[int]) -> TrainVideo:
    """The frames `indices` (in that order), all marked annotated."""
    return dataclasses.replace(
        self, frames=self.frames.take(indices, axis=0),
        masks=self.masks.take(indices, axis=0),
        annotated=np.ones(len(indices), bool),
        presence=(None if self.presence is None else
                  tuple(self.presence[t] for t in indices)))


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of one (H, W, 3) uint8 frame to size=(H, W)."""
  if frame.shape[:2] == tuple(size):
    return frame
  h, w = size
  return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of one (H, W) uint8 id mask to size=(H, W)."""
  if mask.shape == tuple(size):
    return mask
  h, w = size
  return np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of (T, H, W, 3) uint8 frames to size=(H, W)."""
  if frames.shape[1:3] == tuple(size):
    return frames
  return np.stack([resize_frame(f, size) for f in frames])


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Nearest-neighbour resize of (T, H, W) uint8 id masks to size=(H, W)."""
  if masks.shape[1:3] == tuple(size):
    return masks
  return np.stack([resize_mask(m, size) for m in masks])


def prepare(videos: Iterable[Video], size: tuple[int, int]) -> list[TrainVideo]:
  """Resizes whole in-memory videos (tests, small data); training reads
  through `pipeline.index_videos` instead."""
  out = []
  for v in videos:
    out.append(TrainVideo(v.name, resize_frames(v.frames, size),
                          resize_masks(v.masks, size), np.asarray(v.annotated),
                          tuple(v.object_ids)))
  return out


def _rng(seed: int, step: int, process_index: int) -> np.random.Generator:
  return np.random.default_rng([seed, step, process_index])


def _binary(masks: np.ndarray, object_id: int | None):
  """(mask in {0,1} float32, valid bool) for one object (None = any object)."""
  valid = masks != VOID
  fg = (masks == object_id) if object_id is not None else (masks > 0) & valid
  return fg.astype(np.float32), valid


def _to_float(frames: np.ndarray) -> np.ndarray:
  return frames.astype(np.float32) / 255.0


class TaskSampler:
  """e-OSVOS tasks: one task per (sequence, object).

  Building tasks per object, not per video, keeps the meta-learner from
  memorising which object of a video to segment. The support frame is a
  random annotated frame in which the object is present; the query frames
  are other annotated frames of the same video (the object may be absent
  there: predicting an empty mask is part of the task).
  """

  def __init__(self, videos: Sequence[TrainVideo], num_query: int, seed: int):
    self.videos = list(videos)
    self.num_query = num_query
    self.seed = seed
    self.tasks = []  # (video index, object id, frames where the object is)
    for vi, v in enumerate(self.videos):
      ann = np.flatnonzero(v.annotated)
      for obj in v.object_ids:
        present = [t for t in ann if obj in v.objects_at(t)]
        if present and len(ann) >= 2:
          self.tasks.append((vi, obj, np.asarray(present)))
    if not self.tasks:
      raise ValueError(
          "TaskSampler: no (sequence, object) pair has an annotated frame "
          "with the object and a second annotated frame; check the dataset "
          "split (config.data.train_split).")

  def __len__(self) -> int:
    return len(self.tasks)

  def sample(self, step: int, batch_size: int, process_index: int = 0,
             process_count: int = 1) -> dict[str, np.ndarray]:
    """This process's share of the global batch for `step`.

    Returns:
      dict with support_image (B, H, W, 3) float32 in [0, 1], support_mask
      (B, H, W) {0,1}, support_valid (B, H, W) bool, query_image
      (B, Q, H, W, 3), query_mask (B, Q, H, W), query_valid (B, Q, H, W),
      with B = batch_size // process_count.
    """
    if batch_size % process_count:
      raise ValueError(f"Global batch {batch_size} is not divisible by "
                       f"{process_count} processes.")
    local = batch_size // process_count
    rng = _rng(self.seed, step, process_index)
    out = {k: [] for k in ("support_image", "support_mask", "support_valid",
                           "query_image", "query_mask", "query_valid")}
    for i in rng.integers(0, len(self.tasks), size=local):
      vi, obj, present = self.tasks[i]
      v = self.videos[vi]
      s = int(rng.choice(present))
      others = np.setdiff1d(np.flatnonzero(v.annotated), [s])
      q = rng.choice(others, size=self.num_query,
                     replace=len(others) < self.num_query)
      sm, sv = _binary(v.masks[s], obj)
      qm, qv = _binary(v.masks[q], obj)
      out["support_image"].append(_to_float(v.frames[s]))
      out["support_mask"].append(sm)
      out["support_valid"].append(sv)
      out["query_image"].append(_to_float(v.frames[q]))
      out["query_mask"].append(qm)
      out["query_valid"].append(qv)
    return {k: np.stack(x) for k, x in out.items()}


class FrameSampler:
  """OSVOS parent-network samples: annotated frames, foreground = any object."""

  def __init__(self, videos: Sequence[TrainVideo], seed: int):
    self.videos = list(videos)
    self.seed = seed
    self.index = [(vi, t) for vi, v in enumerate(self.videos)
                  for t in np.flatnonzero(v.annotated)]
    if not self.index:
      raise ValueError("FrameSampler: the training split has no annotated "
                       "frames; check config.data.train_split.")

  def __len__(self) -> int:
    return len(self.index)

  def sample(self, step: int, batch_size: int, process_index: int = 0,
             process_count: int = 1) -> dict[str, np.ndarray]:
    """Returns image (B, H, W, 3), mask (B, H, W), valid (B, H, W)."""
    if batch_size % process_count:
      raise ValueError(f"Global batch {batch_size} is not divisible by "
                       f"{process_count} processes.")
    rng = _rng(self.seed, step, process_index)
    picks = rng.integers(0, len(self.index), size=batch_size // process_count)
    images, masks, valids = [], [], []
    for i in picks:
      vi, t = self.index[i]
      v = self.videos[vi]
      m, val = _binary(v.masks[t], None)
      images.append(_to_float(v.frames[t]))
      masks.append(m)
      valids.append(val)
    return {"image": np.stack(images), "mask": np.stack(masks),
            "valid": np.stack(valids)}
