"""Clips of a few frames for memory-network training (STCN and successors).

A clip starts at a labelled frame with at least one object, then moves in
one direction (forward or backward, at random where both fit) with gaps of
1..`max_gap` frames. Up to `max_objects` of the objects in the first frame
are kept, in random order, as one-hot masks. A label set (see
metavos.data.labels) restricts which frames count as labelled: a clip must
start at one, and the masks of the other frames are zeroed and marked
invalid.

Like the samplers of metavos.data.sampling, a batch is a pure function of
(seed, step, process): a resumed run sees the same clips.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from metavos.data.sampling import TrainVideo, _rng, _to_float
from metavos.data.types import VOID

LabelSet = Mapping[str, Sequence[int]]


class ClipSampler:
  """Deterministic clips from training videos.

  Attributes:
    starts: (video index, start frame) pairs a clip may start at.
  """

  def __init__(self, videos: Sequence[TrainVideo], clip_length: int,
               max_gap: int, max_objects: int, seed: int,
               label_set: LabelSet | None = None, flip: bool = False):
    """Indexes the possible clip starts.

    Args:
      videos: training videos (metavos.data.sampling.prepare).
      clip_length: frames per clip (>= 1).
      max_gap: largest step between consecutive clip frames (>= 1).
      max_objects: objects per clip, K (fewer are padded, present=False).
      seed: sampling seed.
      label_set: {sequence: labelled frames}; None = every annotated frame.
      flip: flip whole clips horizontally at random.
    """
    if clip_length < 1 or max_gap < 1 or max_objects < 1:
      raise ValueError("ClipSampler: clip_length, max_gap and max_objects "
                       "must be >= 1; check config.clip.")
    self.videos = list(videos)
    self.length, self.max_gap, self.max_objects = (clip_length, max_gap,
                                                   max_objects)
    self.seed, self.flip = seed, flip
    self.labelled = [self._labelled(v, label_set) for v in self.videos]
    self.starts = [(vi, int(t)) for vi, v in enumerate(self.videos)
                   for t in np.flatnonzero(self.labelled[vi])
                   if self._objects_at(v, t) and self._directions(v, t)]
    if not self.starts:
      raise ValueError(
          f"ClipSampler: no labelled frame with an object starts a clip of "
          f"{clip_length} frames. Fix: use longer videos, a shorter "
          "config.clip.length, or a label set with frames that show objects.")

  @staticmethod
  def _labelled(v: TrainVideo, label_set: LabelSet | None) -> np.ndarray:
    lab = np.asarray(v.annotated, bool).copy()
    if label_set is not None:
      chosen = np.zeros_like(lab)
      chosen[list(label_set.get(v.name, ()))] = True
      lab &= chosen
    return lab

  @staticmethod
  def _objects_at(v: TrainVideo, t: int) -> list[int]:
    shown = v.objects_at(t)
    return [o for o in v.object_ids if o in shown]

  def _directions(self, v: TrainVideo, t: int) -> list[tuple[int, int]]:
    """(direction, largest usable gap) for each direction the clip fits."""
    steps = self.length - 1
    if steps == 0:
      return [(1, 1)]
    out = []
    for d, room in ((1, len(v.annotated) - 1 - t), (-1, t)):
      gap = min(self.max_gap, room // steps)
      if gap >= 1:
        out.append((d, gap))
    return out

  def __len__(self) -> int:
    return len(self.starts)

  def _clip(self, rng: np.random.Generator, vi: int, t: int):
    v = self.videos[vi]
    options = self._directions(v, t)
    d, gap = options[rng.integers(len(options))]
    gaps = rng.integers(1, gap + 1, size=self.length - 1)
    idx = t + d * np.concatenate([[0], np.cumsum(gaps)]).astype(int)
    objs = self._objects_at(v, t)
    objs = [objs[i] for i in rng.permutation(len(objs))][:self.max_objects]
    ids = np.asarray(objs + [0] * (self.max_objects - len(objs)))
    present = np.arange(self.max_objects) < len(objs)
    raw = v.masks[idx]  # (L, H, W)
    labelled = self.labelled[vi][idx]
    masks = ((raw[:, None] == ids[None, :, None, None])
             & present[None, :, None, None] & labelled[:, None, None, None])
    valid = (raw != VOID) & labelled[:, None, None]
    frames = _to_float(v.frames[idx])
    if self.flip and rng.random() < 0.5:
      frames, masks, valid = frames[..., ::-1, :], masks[..., ::-1], valid[
          ..., ::-1]
    return {"frames": frames, "masks": masks.astype(np.float32),
            "valid": valid, "present": present, "labelled": labelled,
            "frame_index": idx.astype(np.int32),
            "video_index": np.int32(vi)}

  def sample(self, step: int, batch_size: int, process_index: int = 0,
             process_count: int = 1) -> dict[str, np.ndarray]:
    """This process's share of the global batch of clips for `step`.

    Returns:
      dict with B = batch_size // process_count leading and L = clip_length:
      frames (B, L, H, W, 3) float32 in [0, 1]; masks (B, L, K, H, W) {0, 1}
      float32 one-hot (zero for padding objects and unlabelled frames);
      valid (B, L, H, W) bool (non-void pixels of labelled frames); present
      (B, K) bool; labelled (B, L) bool (frame 0 always True); frame_index
      (B, L) int32; video_index (B,) int32.
    """
    if batch_size % process_count:
      raise ValueError(f"Global batch {batch_size} is not divisible by "
                       f"{process_count} processes.")
    rng = _rng(self.seed, step, process_index)
    picks = rng.integers(0, len(self.starts), size=batch_size // process_count)
    clips = [self._clip(rng, *self.starts[i]) for i in picks]
    return {k: np.stack([c[k] for c in clips]) for k in clips[0]}

