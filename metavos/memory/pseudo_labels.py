"""Intermediate inference of two-shot VOS: pseudo-labels for every frame.

With the phase-1 model, masks are propagated from each labelled frame of a
training video forward and backward; each frame takes the prediction
propagated from its nearest labelled frame (`propagate.MemorySegmenter` with
`annotated_frames`, i.e. `propagate.merge_nearest`), and labelled frames keep
their real masks. The model sees the masks of the labelled frames only: the
video is first cut down to them (`restrict_to_labels`).

The pseudo-labels form a DAVIS-layout dataset root, so the same reader trains
on them and the official scorer compares them with the real masks:

  <root>/Annotations/<res>/<seq>/<frame>.png   palette PNGs (object ids)
  <root>/JPEGImages/<res>/<seq>                link to the source frames
                                               (or JPEG copies)
  <root>/ImageSets/<year>/<split>.txt          the sequences, one a line

The split file is written last: its presence marks a finished root.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image

from metavos.data import davis, writers
from metavos.data.types import VOID, Video
from metavos.memory import propagate
from metavos.runtime import files


def restrict_to_labels(video: Video, frames: Sequence[int]) -> Video:
  """The video as a label set shows it: masks at `frames` only.

  Objects are those in the labelled frames (an object seen in neither
  cannot be propagated), each first seen at its first labelled frame.
  """
  frames = sorted(int(t) for t in frames)
  annotated = np.zeros(video.num_frames, bool)
  annotated[frames] = True
  masks = np.where(annotated[:, None, None], video.masks, 0).astype(np.uint8)
  first_frame = {}
  for t in frames:
    for o in sorted(davis.object_ids_in(masks[t]) - first_frame.keys()):
      first_frame[o] = t
  return dataclasses.replace(video, masks=masks, annotated=annotated,
                             object_ids=tuple(sorted(first_frame)),
                             first_frame=first_frame)


def pseudo_label_video(segmenter: propagate.MemorySegmenter, video: Video,
                       frames: Sequence[int]) -> np.ndarray:
  """Pseudo-labels (T, H, W) uint8 object ids of one video.

  Args:
    segmenter: the phase-1 model bound to a propagation segmenter (any
      implementation of the memory-network interface).
    video: the video; only the masks at `frames` are read.
    frames: its labelled frames.

  Returns:
    Ids merged from the nearest labelled frame's propagation; labelled
    frames hold their real masks (void as background); all zero when the
    labelled frames show no object.
  """
  sparse = restrict_to_labels(video, frames)
  if not sparse.object_ids:
    return np.zeros(video.masks.shape, np.uint8)
  pred, _ = segmenter.segment(sparse, None, annotated_frames=sorted(frames))
  return pred


def _link_frames(source_dir: pathlib.Path, video: Video,
                 target: pathlib.Path) -> None:
  """Points target at the source frame folder, or writes JPEG copies."""
  if target.exists() or target.is_symlink():
    return
  target.parent.mkdir(parents=True, exist_ok=True)
  if source_dir.is_dir():
    os.symlink(source_dir.resolve(), target, target_is_directory=True)
    return
  for name, frame in zip(video.frame_names, video.frames):
    with files.atomic_open(target / f"{name}.jpg", "wb") as f:
      Image.fromarray(frame).save(f, format="JPEG", quality=95)


@dataclasses.dataclass(frozen=True)
class PseudoRoot:
  """Where a pseudo-label dataset is written.

  Attributes:
    root: the dataset root.
    resolution: its resolution folder.
    year: the ImageSets/<year>/ folder of its split file.
    split: the split file's stem (the training split's name).
  """
  root: pathlib.Path
  resolution: str
  year: int
  split: str

  @property
  def annotations(self) -> pathlib.Path:
    return self.root / "Annotations" / self.resolution

  @property
  def split_file(self) -> pathlib.Path:
    return self.root / "ImageSets" / str(self.year) / f"{self.split}.txt"

  def is_complete(self) -> bool:
    return self.split_file.is_file()

  def write_video(self, video: Video, pred: np.ndarray,
                  source_frames: pathlib.Path) -> None:
    """Writes one video's pseudo-labels and links its frames."""
    writers.write_davis_results(self.annotations, video.name,
                                video.frame_names, pred)
    _link_frames(source_frames, video,
                 self.root / "JPEGImages" / self.resolution / video.name)

  def finish(self, sequences: Sequence[str]) -> None:
    """Writes the split file (last, atomically): the root is complete."""
    files.atomic_write_text(self.split_file,
                            "".join(f"{s}\n" for s in sequences))

  def open(self) -> davis.DavisDataset:
    """The root as a dataset; objects may first appear after frame 0 (a
    pseudo-label can miss an object in the first frame)."""
    return davis.DavisDataset(self.root, self.year, self.split,
                              self.resolution, allow_new_objects=True)


def has_object(pred: np.ndarray) -> bool:
  return bool(np.any((pred > 0) & (pred != VOID)))
