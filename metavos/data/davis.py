"""DAVIS 2016 / 2017 reader (also reads any DAVIS-layout folder).

Layout under `root`:

  JPEGImages/<resolution>/<sequence>/00000.jpg ...
  Annotations/<resolution>/<sequence>/00000.png ...
  ImageSets/<year>/<split>.txt         DAVIS 2017 style: one sequence a line
  ImageSets/<resolution>/<split>.txt   DAVIS 2016 release style: lines of
      "/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png"

Masks: DAVIS 2016 ships binary 0/255 grayscale ("L") PNGs, where every nonzero
pixel is the one object (id 1). DAVIS 2017 ships palette PNGs whose indices are
object ids, 255 = void; void is kept as 255 in `Video.masks`. Reading with
`year=2016` maps every nonzero, non-void id to 1, so 2017-layout data can be
evaluated as single-object DAVIS 2016.

A dataset object holds file names only; `load` decodes one sequence at a time.
The frame/mask assembly (`FrameFiles`, `read_frames`, `davis_video`) is shared
with the YouTube-VOS reader and the TFDS records, so all decode alike.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from metavos.data import io
from metavos.data.errors import DataError
from metavos.data.types import VOID, Video

YEARS = (2016, 2017)

ImageReader = Callable[[str], np.ndarray]
MaskReader = Callable[[str], tuple[np.ndarray, str]]


@dataclasses.dataclass(frozen=True)
class FrameFiles:
  """Where one frame and its optional annotation come from.

  Attributes:
    name: frame stem, e.g. "00000".
    image: image file (or record key) passed to the image reader.
    mask: annotation file (or record key), None if the frame has none.
  """

  name: str
  image: str
  mask: str | None


# Grey DAVIS 2016 masks: object where the value is at least this.
GREY_THRESHOLD = 128


def mask_to_ids(raw: np.ndarray, mode: str, year: int,
                path: str = "<mask>") -> np.ndarray:
  """Converts stored mask values to object ids.

  Args:
    raw: (H, W) uint8 values as stored in the PNG.
    mode: "L" or "P" (see `io.read_mask_and_mode`).
    year: 2016 makes every nonzero, non-void pixel object 1.
    path: the file, named in errors.

  Returns:
    (H, W) uint8 ids, 0 = background, 255 = void.

  A greyscale DAVIS 2016 mask with values between 0 and 255 (anti-aliased,
  or resized with bilinear filtering) is binarised at `GREY_THRESHOLD`
  (half intensity), as DAVIS' own downsampled masks are; one whose values
  are all small (< the threshold) is a label image: nonzero is the object.
  Any other year reads values as ids, so a greyscale mask with values in
  [GREY_THRESHOLD, 255) is refused: those are blurred edges, not objects.

  Raises:
    DataError: a greyscale id mask (year != 2016) with grey values.
  """
  if mode == "L" and np.all((raw == 0) | (raw == 255)):
    # DAVIS 2016 binary mask: 255 is the object, not void.
    return (raw > 0).astype(np.uint8)
  if mode == "L" and year == 2016:
    if raw.max() >= GREY_THRESHOLD:
      return (raw >= GREY_THRESHOLD).astype(np.uint8)
    return (raw > 0).astype(np.uint8)
  if mode == "L":
    grey = np.unique(raw[(raw >= GREY_THRESHOLD) & (raw != VOID)])
    if grey.size:
      raise DataError(
          path, f"greyscale mask holds values {grey[:6].tolist()}"
          f"{' ...' if grey.size > 6 else ''} that would be read as object "
          "ids: an anti-aliased or bilinearly resized mask", "save masks as "
          "palette PNGs of object ids (or binary 0/255 for one object), "
          "resized with nearest-neighbour")
  if year == 2016:
    return np.where(raw == VOID, VOID, raw > 0).astype(np.uint8)
  return raw


def read_frames(
    frames: Sequence[FrameFiles], *, year: int = 2017,
    read_image: ImageReader = io.read_image,
    read_mask: MaskReader = io.read_mask_and_mode,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Decodes frames and masks, checking that all sizes agree.

  Args:
    frames: the frames of one sequence, in order.
    year: mask convention, see `mask_to_ids`.
    read_image: key -> (H, W, 3) uint8; raises DataError on bad data.
    read_mask: key -> ((H, W) uint8, mode); raises DataError on bad data.

  Returns:
    (images (T, H, W, 3) uint8, masks (T, H, W) uint8, annotated (T,) bool).

  Raises:
    DataError: a frame or mask is unreadable or its size differs.
  """
  images, masks = [], []
  annotated = np.zeros(len(frames), bool)
  for t, frame in enumerate(frames):
    image = read_image(frame.image)
    if images and image.shape != images[0].shape:
      raise DataError(
          frame.image, f"frame is {image.shape[0]}x{image.shape[1]} but "
          f"{frames[0].image} is {images[0].shape[0]}x{images[0].shape[1]}",
          "all frames of a sequence must have one size; re-extract them")
    images.append(image)
    mask = np.zeros(image.shape[:2], np.uint8)
    if frame.mask is not None:
      raw, mode = read_mask(frame.mask)
      if raw.shape != image.shape[:2]:
        raise DataError(
            frame.mask, f"mask is {raw.shape[0]}x{raw.shape[1]} but its frame "
            f"{frame.image} is {image.shape[0]}x{image.shape[1]}",
            "use annotations of the same resolution as the frames (check the "
            "resolution folder) or resize the mask with nearest-neighbour")
      mask = mask_to_ids(raw, mode, year, frame.mask)
      annotated[t] = True
    masks.append(mask)
  if all(image.strides == (0, 0, 0) for image in images):
    # Header-only stand-ins (io.check_image_file): one zero view, not T
    # frames of zeros.
    return (np.broadcast_to(images[0], (len(images),) + images[0].shape),
            np.stack(masks), annotated)
  return np.stack(images), np.stack(masks), annotated


@dataclasses.dataclass(frozen=True)
class FileReader:
  """One frame or one mask of a file-backed dataset at a time, by the keys of
  its `FrameFiles` (the training pipeline's random access; picklable, so
  loader worker processes get their own).

  Attributes:
    year: mask convention, see `mask_to_ids`.
  """
  year: int = 2017

  def image(self, key: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame."""
    return io.read_image(key)

  def mask(self, key: str) -> np.ndarray:
    """(H, W) uint8 object ids (`mask_to_ids`)."""
    return mask_to_ids(*io.read_mask_and_mode(key), self.year, key)


def object_ids_in(mask: np.ndarray) -> set[int]:
  """Ids of the objects in a mask (background 0 and void 255 excluded)."""
  return {int(i) for i in np.unique(mask)} - {0, VOID}


def davis_video(
    name: str, frames: Sequence[FrameFiles], *, year: int = 2017,
    allow_new_objects: bool = False, read_image: ImageReader = io.read_image,
    read_mask: MaskReader = io.read_mask_and_mode,
) -> Video:
  """Decodes one sequence with DAVIS rules for its objects.

  The objects are those of the first annotated frame. An id first seen in a
  later frame is an error, or, with `allow_new_objects`, a new object whose
  `first_frame` is where it first appears (then the first annotated mask may
  also be empty, as in a label set's first labelled frame).

  Args:
    name: sequence name.
    frames: its frames, in order (see `read_frames` for the readers).
    year: mask convention, see `mask_to_ids`.
    allow_new_objects: accept ids absent from the first annotated frame.
    read_image: see `read_frames`.
    read_mask: see `read_frames`.

  Returns:
    The decoded `Video`.

  Raises:
    DataError: unreadable data, no annotation, an empty first mask (with
      `allow_new_objects`: no object in any mask), or an unexpected object
      id.
  """
  images, masks, annotated = read_frames(
      frames, year=year, read_image=read_image, read_mask=read_mask)
  if not annotated.any():
    raise DataError(
        frames[0].image, f"sequence {name!r} has no annotation for any frame",
        "add at least the first frame's mask under Annotations/")
  first = int(np.argmax(annotated))
  first_frame = dict.fromkeys(sorted(object_ids_in(masks[first])), first)
  # With new objects allowed, every object may enter after the first
  # annotated frame (sparse label sets, pseudo-labels); only a sequence with
  # no object in any annotated frame is an error then.
  if not first_frame and not allow_new_objects:
    raise DataError(
        frames[first].mask, "first annotated mask contains no object",
        "annotate at least one object (nonzero, non-255 id) in this frame")
  for t in np.flatnonzero(annotated)[1:]:
    for new_id in sorted(object_ids_in(masks[t]) - first_frame.keys()):
      if not allow_new_objects:
        raise DataError(
            frames[t].mask, f"object id {new_id} is not in the first annotated "
            f"mask {frames[first].mask}",
            "fix the annotation ids so that every object is in the first "
            "annotated mask (the DAVIS protocol); for a dataset whose objects "
            "enter later, use the YouTube-VOS layout and "
            "--config.data.kind=youtube_vos")
      first_frame[new_id] = int(t)
  if not first_frame:
    raise DataError(
        frames[first].mask, f"no annotated mask of sequence {name!r} "
        "contains an object", "annotate at least one object (nonzero, "
        "non-255 id) in one of its frames")
  return Video(
      name=name, frames=images, masks=masks, annotated=annotated,
      frame_names=tuple(f.name for f in frames),
      object_ids=tuple(sorted(first_frame)), first_frame=first_frame)


def _parse_split_file(
    path: pathlib.Path) -> dict[str, list[tuple[str, bool]] | None]:
  """Sequence -> listed (frame stem, has annotation), None for a name list."""
  sequences: dict[str, list[tuple[str, bool]] | None] = {}
  for line in path.read_text().splitlines():
    tokens = line.split()
    if not tokens:
      continue
    if "/" not in tokens[0]:
      sequences.setdefault(tokens[0], None)
      continue
    # DAVIS 2016 release: ".../JPEGImages/480p/<sequence>/<frame>.jpg" and
    # optionally the annotation path, on one line.
    image = pathlib.PurePosixPath(tokens[0])
    if len(image.parts) < 2:
      raise DataError(path, f"cannot read line {line!r}",
                      "list one sequence name or one image path a line")
    frames = sequences.setdefault(image.parent.name, [])
    if frames is None:
      raise DataError(path, f"sequence {image.parent.name!r} is listed both by "
                      "name and by frame", "use one style per split file")
    frames.append((image.stem, len(tokens) > 1))
  return sequences


def _consecutive_gap(stems: Sequence[str]) -> str | None:
  """The first missing frame stem if numbered frames skip a number."""
  if not all(s.isdigit() for s in stems):
    return None
  numbers = [int(s) for s in stems]
  for previous, current in zip(numbers, numbers[1:]):
    if current != previous + 1:
      return str(previous + 1).zfill(len(stems[0]))
  return None


class DavisDataset:
  """The sequences of one DAVIS split, decoded one at a time by `load`.

  Attributes:
    root: dataset root.
    year: 2016 (single object) or 2017 (multi-object) mask convention.
    split: split name, or None for every sequence folder of the resolution.
    resolution: resolution folder, e.g. "480p", "240p", "Full-Resolution".
    split_file: the file the split was read from (None when split is None).
    sequences: sequence names, in split-file order.
  """

  def __init__(self, root, year: int = 2017, split: str | None = "train",
               resolution: str = "480p", *, allow_new_objects: bool = False):
    """Finds the split's sequences; decodes nothing yet.

    Args:
      root: dataset root (see the module docstring for the layout).
      year: 2016 or 2017.
      split: split file stem under ImageSets/<year>/ or
        ImageSets/<resolution>/; None lists every sequence folder.
      resolution: resolution folder name.
      allow_new_objects: accept object ids absent from the first annotated
        frame (DAVIS forbids them).

    Raises:
      DataError: missing folders, unknown split or a listed sequence with no
        frame folder.
      ValueError: `year` is not 2016 or 2017.
    """
    if year not in YEARS:
      raise ValueError(f"year must be one of {YEARS}, got {year!r}")
    self.root = pathlib.Path(root)
    self.year, self.split, self.resolution = year, split, resolution
    self.allow_new_objects = allow_new_objects
    self._image_dir = self.root / "JPEGImages" / resolution
    self._mask_dir = self.root / "Annotations" / resolution
    self._check_image_dir()
    self.split_file, listing = self._find_split()
    self._listed_frames = {s: f for s, f in listing.items() if f is not None}
    self.sequences = list(listing)
    for sequence in self.sequences:
      if not (self._image_dir / sequence).is_dir():
        raise DataError(
            self._image_dir / sequence,
            f"sequence listed in {self.split_file} has no frame folder",
            "restore the frames or remove the sequence from the split file")

  def _check_image_dir(self) -> None:
    if not self.root.is_dir():
      raise DataError(self.root, "dataset folder not found",
                      "pass the folder that holds JPEGImages/ and Annotations/")
    if not self._image_dir.is_dir():
      parent = self.root / "JPEGImages"
      found = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
      raise DataError(
          self._image_dir, "frame folder not found",
          f"pass a resolution that exists (found: {found or 'none'}) or "
          "extract the frames there")

  def _find_split(self) -> tuple[pathlib.Path | None, dict]:
    if self.split is None:
      names = sorted(p.name for p in self._image_dir.iterdir() if p.is_dir())
      return None, dict.fromkeys(names)
    image_sets = self.root / "ImageSets"
    for folder in (str(self.year), self.resolution):
      path = image_sets / folder / f"{self.split}.txt"
      if path.is_file():
        return path, _parse_split_file(path)
    available = sorted(
        str(p.relative_to(image_sets)) for p in image_sets.glob("*/*.txt"))
    raise DataError(
        image_sets / str(self.year) / f"{self.split}.txt",
        f"no split file for split {self.split!r}, year {self.year}, "
        f"resolution {self.resolution!r}",
        f"use one of the split files under {image_sets}: "
        f"{available or 'none found'}")

  def __len__(self) -> int:
    return len(self.sequences)

  def __iter__(self) -> Iterator[Video]:
    for sequence in self.sequences:
      yield self.load(sequence)

  def frame_files(self, name: str) -> list[FrameFiles]:
    """Lists one sequence's frames and annotations, checking they pair up.

    Args:
      name: sequence name.

    Returns:
      Its frames in order, each with its annotation file or None.

    Raises:
      DataError: missing frame folder or listed frame, a gap in the frame
        numbers, or an annotation without a frame.
    """
    image_dir, mask_dir = self._image_dir / name, self._mask_dir / name
    if not image_dir.is_dir():
      raise DataError(image_dir, "sequence frame folder not found",
                      "check the sequence name and resolution folder")
    images = {p.stem: p for p in sorted(image_dir.glob("*.jpg"))}
    if not images:
      raise DataError(image_dir, "no .jpg frames in the sequence folder",
                      "extract the sequence's JPEG frames here")
    masks = {p.stem: p for p in sorted(mask_dir.glob("*.png"))}
    for stem, path in masks.items():
      if stem not in images:
        raise DataError(path, f"annotation has no matching frame {stem}.jpg "
                        f"in {image_dir}", "restore the frame or delete the "
                        "stray annotation")
    listed = self._listed_frames.get(name)
    if listed is None:
      stems = list(images)
      gap = _consecutive_gap(stems)
      if gap is not None:
        raise DataError(image_dir / f"{gap}.jpg", "frame missing: the frame "
                        "numbers skip it", "restore the missing frame")
    else:
      stems = [stem for stem, _ in listed]
      self._check_listed(name, listed, images, masks)
    return [FrameFiles(s, str(images[s]),
                       str(masks[s]) if s in masks else None) for s in stems]

  def _check_listed(self, name: str, listed: list[tuple[str, bool]],
                    images: dict, masks: dict) -> None:
    for stem, has_mask in listed:
      if stem not in images:
        raise DataError(self._image_dir / name / f"{stem}.jpg", "frame listed "
                        f"in {self.split_file} is missing", "restore the frame "
                        "or fix the split file")
      if has_mask and stem not in masks:
        raise DataError(self._mask_dir / name / f"{stem}.png", "annotation "
                        f"listed in {self.split_file} is missing", "restore the "
                        "annotation or fix the split file")

  def load(self, name: str, headers_only: bool = False) -> Video:
    """Decodes one sequence.

    Args:
      name: sequence name (normally one of `sequences`).
      headers_only: check the frames from their headers and leave them
        undecoded (`frames` is then a zero view; masks are decoded): what
        the training index reads (metavos.data.pipeline).

    Returns:
      The `Video`; unannotated frames hold zeros with `annotated[t] False`.

    Raises:
      DataError: any bad file (see `frame_files` and `davis_video`).
    """
    return davis_video(
        name, self.frame_files(name), year=self.year,
        allow_new_objects=self.allow_new_objects,
        read_image=io.check_image_file if headers_only else io.read_image)

  def frame_reader(self) -> "FileReader":
    """Reads single frames and masks of this dataset (see `FileReader`)."""
    return FileReader(self.year)
