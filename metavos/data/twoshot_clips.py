"""The clip samplers of two-shot training, built on `clips.ClipSampler`.

  warm-up (phase 1, before the teacher): pairs of labelled frames of one
    video, one predicted from the other: every predicted frame has a label.
  phase 1 after warm-up: `ClipSampler` with the label set (a clip starts at
    a labelled frame; the teacher supervises the others), optionally with
    the warm-up's labelled pairs in every batch (`WithLabelledPairs`).
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


# Added to the run's seed for the pairs drawn beside the teacher's clips:
# with the clips' own seed both would pick from one random stream, and the
# pair of a batch item would follow its clip's video.
PAIR_SEED_OFFSET = 1 << 20


@dataclasses.dataclass
class WithLabelledPairs:
  """Phase 1 after the warm-up with the real labels kept in every batch:
  `sample` returns {"clips": the teacher's clips, "pairs": `num_pairs`
  labelled pairs (global count) of `warmup_sampler`}, so the student keeps
  fitting the labelled frames while it learns from the teacher."""
  clips: clips.ClipSampler
  pairs: clips.ClipSampler
  num_pairs: int

  def __post_init__(self):
    if self.num_pairs < 1:
      raise ValueError("WithLabelledPairs: num_pairs must be >= 1 (check "
                       "config.twoshot.anchor_pairs).")

  def __len__(self) -> int:
    return len(self.clips)

  def sample(self, step: int, batch_size: int, process_index: int = 0,
             process_count: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """This process's share of the teacher clips and of the pairs."""
    if self.num_pairs % process_count:
      raise ValueError(f"config.twoshot.anchor_pairs={self.num_pairs} is not "
                       f"divisible by the {process_count} processes.")
    return {"clips": self.clips.sample(step, batch_size, process_index,
                                       process_count),
            "pairs": self.pairs.sample(step, self.num_pairs, process_index,
                                       process_count)}


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
