"""In-memory video type shared by every reader, sampler, method and metric."""

from __future__ import annotations

import dataclasses

import numpy as np

VOID = 255  # Mask value ignored by losses and metrics (DAVIS 2017 convention).


@dataclasses.dataclass(frozen=True)
class Video:
  """One video with (possibly sparse) object-id annotations.

  Attributes:
    name: sequence name, e.g. "bmx-trees".
    frames: (T, H, W, 3) uint8 RGB frames.
    masks: (T, H, W) uint8 object ids; 0 = background, 255 = void. Frames
      without an annotation file hold zeros and have `annotated[t] == False`.
    annotated: (T,) bool, whether frame t has a ground-truth mask file.
    frame_names: T frame stems ("00000", ...), used to name result files.
    object_ids: sorted ids of the objects to segment (DAVIS: those of the
      first annotated frame; YouTube-VOS: every object of the sequence).
    first_frame: object id -> index of the frame where it is first annotated.
  """

  name: str
  frames: np.ndarray
  masks: np.ndarray
  annotated: np.ndarray
  frame_names: tuple[str, ...]
  object_ids: tuple[int, ...]
  first_frame: dict[int, int]

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])

  @property
  def size(self) -> tuple[int, int]:
    """(height, width)."""
    return int(self.frames.shape[1]), int(self.frames.shape[2])
