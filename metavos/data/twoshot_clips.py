"""The clip samplers of two-shot training, built on `clips.ClipSampler`.

  warm-up (phase 1, before the teacher): pairs of labelled frames of one
    video, one predicted from the other: every predicted frame has a label.
  phase 1 after warm-up: `ClipSampler` with the label set (a clip starts at
    a labelled frame; the teacher supervises the others).
  phase 2: `ClipSampler` over the pseudo-labelled videos (every frame has a
    mask), with `labelled` flags that name the REAL labels only, so the
    student's confident predictions may replace pseudo-labels but never a
    real label.

Each is a pure function of (seed, step, process), like every sampler.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from metavos.data import clips
from metavos.data.sampling import TrainVideo

LabelSet = Mapping[str, Sequence[int]]


def labelled_frames_only(videos: Sequence[TrainVideo], label_set: LabelSet
                         ) -> list[TrainVideo]:
  """Each video cut down to its labelled frames (in time order); videos with
  fewer than two labelled frames are left out (no pair to learn from)."""
  out = []
  for v in videos:
    keep = [t for t in sorted(label_set.get(v.name, ())) if v.annotated[t]]
    if len(keep) >= 2:
      out.append(v.take(keep))
  return out


def warmup_sampler(videos: Sequence[TrainVideo], label_set: LabelSet,
                   max_objects: int, seed: int, flip: bool
                   ) -> clips.ClipSampler:
  """Clips of two labelled frames, in either order (frame 0 in memory, the
  other predicted), with adjacent labelled frames of a video as pairs."""
  pairs = labelled_frames_only(videos, label_set)
  if not pairs:
    raise ValueError("two-shot warm-up: no training video has two labelled "
                     "frames. Fix: config.labels.per_video >= 2, or a label "
                     "file with two frames per video.")
  return clips.ClipSampler(pairs, 2, 1, max_objects, seed, None, flip)


@dataclasses.dataclass
class RealLabelFlags:
  """A ClipSampler over pseudo-labelled videos whose `labelled` flags say
  which clip frames carry a REAL label (from `label_set`)."""
  sampler: clips.ClipSampler
  label_set: LabelSet

  def __post_init__(self):
    self._real = []
    for v in self.sampler.videos:
      real = np.zeros(len(v.annotated), bool)
      real[list(self.label_set.get(v.name, ()))] = True
      self._real.append(real)

  def __len__(self) -> int:
    return len(self.sampler)

  def sample(self, step: int, batch_size: int, process_index: int = 0,
             process_count: int = 1) -> dict[str, np.ndarray]:
    """`ClipSampler.sample` with `labelled` (B, L) = real label flags."""
    batch = self.sampler.sample(step, batch_size, process_index,
                                process_count)
    batch["labelled"] = np.stack([
        self._real[vi][idx] for vi, idx in zip(batch["video_index"],
                                               batch["frame_index"])])
    return batch
