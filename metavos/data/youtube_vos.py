"""YouTube-VOS reader.

Layout under `root`:

  <split>/JPEGImages/<sequence>/00000.jpg 00005.jpg ...
  <split>/Annotations/<sequence>/00000.png ...   palette PNGs, object ids
  <split>/meta.json   {"videos": {sequence: {"objects": {"1": {
                          "category": "cat", "frames": ["00000", ...]}}}}}

Unlike DAVIS, annotations are sparse (every 5th frame in "train", only each
object's first frame in "valid") and objects may enter after the first frame:
`Video.object_ids` holds every object of the sequence and `first_frame[k]` the
first frame whose mask contains object k. meta.json, when present, is checked
against the masks: every id in a mask must be listed for its sequence, and the
first frame meta.json gives an object must have a mask containing it.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator, Mapping

import numpy as np

from metavos.data import davis, io
from metavos.data.errors import DataError
from metavos.data.types import Video

META = "meta.json"


def read_meta(path) -> dict:
  """Reads a YouTube-VOS meta.json.

  Args:
    path: the meta.json file.

  Returns:
    The parsed file, guaranteed to hold a "videos" mapping.

  Raises:
    DataError: missing, not JSON, or without "videos".
  """
  path = pathlib.Path(path)
  fix = "re-download meta.json for this split"
  try:
    meta = json.loads(path.read_text())
  except FileNotFoundError:
    raise DataError(path, "meta.json not found", fix) from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DataError(path, f"not valid JSON ({e})", fix) from e
  if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
    raise DataError(path, 'no "videos" mapping at the top level', fix)
  return meta


def requested_frames(meta: Mapping) -> dict[str, list[str]]:
  """Frames the benchmark evaluates: per sequence, any object's frames.

  Args:
    meta: parsed meta.json (see `read_meta`).

  Returns:
    sequence -> sorted frame stems listed for at least one of its objects.
  """
  requested = {}
  for name, video in meta["videos"].items():
    stems = set()
    for obj in video.get("objects", {}).values():
      stems.update(obj.get("frames", []))
    requested[name] = sorted(stems)
  return requested


class YouTubeVOSDataset:
  """The sequences of one YouTube-VOS split, decoded one at a time by `load`.

  Attributes:
    root: dataset root (holding the split folders).
    split: "train", "valid", ...
    meta: parsed meta.json, or None if the split has none.
    sequences: sorted sequence names (folders under JPEGImages/).
  """

  def __init__(self, root, split: str = "train"):
    """Lists the split's sequences; decodes nothing yet.

    Args:
      root: dataset root.
      split: split folder name ("train" or "valid").

    Raises:
      DataError: missing root or unknown split (the message lists the
        splits found), or a malformed meta.json.
    """
    self.root, self.split = pathlib.Path(root), split
    self._dir = self.root / split
    image_dir = self._dir / "JPEGImages"
    if not image_dir.is_dir():
      found = sorted(p.parent.name for p in self.root.glob("*/JPEGImages"))
      raise DataError(image_dir, f"no split {split!r}",
                      f"use one of the splits found under {self.root}: "
                      f"{found or 'none'}")
    meta_path = self._dir / META
    self.meta = read_meta(meta_path) if meta_path.exists() else None
    self.sequences = sorted(p.name for p in image_dir.iterdir() if p.is_dir())

  def __len__(self) -> int:
    return len(self.sequences)

  def __iter__(self) -> Iterator[Video]:
    for sequence in self.sequences:
      yield self.load(sequence)

  def _objects_meta(self, name: str) -> dict[int, list[str]] | None:
    if self.meta is None:
      return None
    if name not in self.meta["videos"]:
      raise DataError(self._dir / META, f"sequence {name!r} is not listed",
                      "re-download meta.json or remove the sequence folder")
    objects = self.meta["videos"][name].get("objects", {})
    return {int(k): sorted(v.get("frames", [])) for k, v in objects.items()}

  def frame_files(self, name: str) -> list[davis.FrameFiles]:
    """Lists one sequence's frames and (sparse) annotations.

    Args:
      name: sequence name.

    Returns:
      Its frames in order, each with its annotation file or None.

    Raises:
      DataError: missing folder or frame listed in meta.json, or an
        annotation without a frame.
    """
    image_dir = self._dir / "JPEGImages" / name
    images = {p.stem: p for p in sorted(image_dir.glob("*.jpg"))}
    if not images:
      raise DataError(image_dir, "no .jpg frames for this sequence",
                      "check the sequence name or re-extract its frames")
    masks = {p.stem: p for p in sorted(
        (self._dir / "Annotations" / name).glob("*.png"))}
    for stem, path in masks.items():
      if stem not in images:
        raise DataError(path, f"annotation has no matching frame {stem}.jpg "
                        f"in {image_dir}", "restore the frame or delete the "
                        "stray annotation")
    for stems in (self._objects_meta(name) or {}).values():
      for stem in stems:
        if stem not in images:
          raise DataError(image_dir / f"{stem}.jpg", f"frame listed in "
                          f"{self._dir / META} is missing", "restore the frame")
    return [davis.FrameFiles(s, str(p), str(masks[s]) if s in masks else None)
            for s, p in images.items()]

  def load(self, name: str, headers_only: bool = False) -> Video:
    """Decodes one sequence.

    Args:
      name: sequence name.
      headers_only: frames checked from their headers, not decoded (see
        `davis.DavisDataset.load`).

    Returns:
      The `Video`, with every object of the sequence and where it starts.

    Raises:
      DataError: unreadable files, or masks that disagree with meta.json.
    """
    frames = self.frame_files(name)
    images, masks, annotated = davis.read_frames(
        frames, read_image=io.check_image_file if headers_only else
        io.read_image)
    first_frame: dict[int, int] = {}
    for t in np.flatnonzero(annotated):
      for k in sorted(davis.object_ids_in(masks[t])):
        first_frame.setdefault(k, int(t))
    if not first_frame:
      raise DataError(self._dir / "Annotations" / name, "no annotation of this "
                      "sequence contains an object",
                      "add the masks of each object's first frame")
    self._check_against_meta(name, frames, masks, first_frame)
    return Video(
        name=name, frames=images, masks=masks, annotated=annotated,
        frame_names=tuple(f.name for f in frames),
        object_ids=tuple(sorted(first_frame)), first_frame=first_frame)

  def frame_reader(self) -> davis.FileReader:
    """Reads single frames and masks (object ids as stored)."""
    return davis.FileReader(2017)

  def _check_against_meta(self, name: str, frames: list[davis.FrameFiles],
                          masks: np.ndarray, first_frame: dict[int, int]) -> None:
    objects = self._objects_meta(name)
    if objects is None:
      return
    meta_path = self._dir / META
    for k, t in first_frame.items():
      if k not in objects:
        raise DataError(frames[t].mask, f"object id {k} is not listed for "
                        f"{name!r} in {meta_path}", "fix the mask ids or "
                        "meta.json")
    index = {f.name: t for t, f in enumerate(frames)}
    for k, stems in objects.items():
      if not stems:
        continue
      t = index[stems[0]]
      if frames[t].mask is None or not np.any(masks[t] == k):
        path = frames[t].mask or (
            self._dir / "Annotations" / name / f"{stems[0]}.png")
        raise DataError(path, f"{meta_path} says object {k} first appears in "
                        "this frame, but its mask does not contain it",
                        "restore the object's first-frame mask")
