"""Writing predictions in the layouts the DAVIS and YouTube-VOS tools read.

All inputs are checked before anything is written, and every file is written
under a temporary name and renamed, so a failure leaves no partial file.
"""

from __future__ import annotations

import hashlib
import pathlib
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

from metavos.data import io, youtube_vos
from metavos.runtime import files

SUBMISSION_ZIP = "submission.zip"
# Fixed timestamp: the same predictions give a byte-identical zip.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def write_davis_results(out_dir, video_name: str, frame_names: Sequence[str],
                        masks: np.ndarray | Sequence[np.ndarray]) -> pathlib.Path:
  """Writes one sequence's predictions as DAVIS palette PNGs.

  Args:
    out_dir: results folder; files go to out_dir/<video_name>/<frame>.png,
      the layout the DAVIS evaluation tools read.
    video_name: sequence name.
    frame_names: frame stems, one per mask.
    masks: T (H, W) uint8 object-id masks.

  Returns:
    The sequence's result folder.

  Raises:
    ValueError: frame names and masks differ in number.
    DataError: a mask is not a 2-D uint8 array (nothing is written).
  """
  if len(frame_names) != len(masks):
    raise ValueError(f"{video_name}: {len(frame_names)} frame names but "
                     f"{len(masks)} masks")
  folder = pathlib.Path(out_dir) / video_name
  # Encode all first, so a bad mask fails before any file is written.
  encoded = [io.encode_mask_png(m, folder / f"{n}.png")
             for n, m in zip(frame_names, masks)]
  for name, data in zip(frame_names, encoded):
    files.atomic_write_bytes(folder / f"{name}.png", data)
  return folder


def sequence_digest(folder) -> str:
  """SHA-256 of a sequence's result PNGs (names and bytes, in name order):
  what `results/provenance.json` records per sequence, so a folder whose
  masks changed after its evaluation is recognised (file times are not
  used: copies reset them)."""
  digest = hashlib.sha256()
  for path in sorted(pathlib.Path(folder).glob("*.png")):
    digest.update(path.name.encode() + b"\0")
    digest.update(path.read_bytes())
  return digest.hexdigest()


class ResultsFolder(Mapping):
  """A results folder (`<sequence>/<frame>.png`, as `write_davis_results`
  writes it) as `sequence -> frame stem -> (H, W) uint8 ids`, read lazily:
  a YouTube-VOS submission is made from what evaluation wrote without
  holding every mask in memory."""

  def __init__(self, root):
    self.root = pathlib.Path(root)

  def __getitem__(self, name: str) -> Mapping[str, np.ndarray]:
    folder = self.root / name
    if not folder.is_dir():
      raise KeyError(name)
    return _SequenceFolder(folder)

  def __iter__(self):
    return iter(sorted(p.name for p in self.root.iterdir() if p.is_dir()))

  def __len__(self) -> int:
    return sum(1 for _ in self)


class _SequenceFolder(Mapping):

  def __init__(self, folder: pathlib.Path):
    self.folder = folder

  def __getitem__(self, stem: str) -> np.ndarray:
    path = self.folder / f"{stem}.png"
    if not path.is_file():
      raise KeyError(stem)
    return io.read_mask(path)

  def __iter__(self):
    return iter(sorted(p.stem for p in self.folder.glob("*.png")))

  def __len__(self) -> int:
    return sum(1 for _ in self)


def write_youtube_vos_submission(
    out_dir, predictions: Mapping[str, Mapping[str, np.ndarray]],
    meta: Mapping) -> pathlib.Path:
  """Writes a YouTube-VOS submission: Annotations/ and submission.zip.

  Only the frames the benchmark asks for are written: per sequence in
  `meta`, the frames listed for any of its objects
  (`youtube_vos.requested_frames`). Extra predicted frames are ignored.

  Args:
    out_dir: output folder; gets Annotations/<seq>/<frame>.png and
      submission.zip holding the same Annotations/ tree.
    predictions: sequence -> frame stem -> (H, W) uint8 object ids.
    meta: the split's parsed meta.json (`youtube_vos.read_meta`).

  Returns:
    Path of submission.zip.

  Raises:
    ValueError: a requested sequence or frame has no prediction.
    DataError: a mask is not a 2-D uint8 array (nothing is written).
  """
  out_dir = pathlib.Path(out_dir)
  encoded: dict[str, bytes] = {}
  for name, stems in sorted(youtube_vos.requested_frames(meta).items()):
    if name not in predictions:
      raise ValueError(f"no predictions for requested sequence {name!r}")
    for stem in stems:
      if stem not in predictions[name]:
        raise ValueError(f"no prediction for requested frame {name}/{stem}")
      member = f"Annotations/{name}/{stem}.png"
      encoded[member] = io.encode_mask_png(predictions[name][stem],
                                           out_dir / member)
  for member, data in encoded.items():
    files.atomic_write_bytes(out_dir / member, data)
  zip_path = out_dir / SUBMISSION_ZIP
  with files.atomic_open(zip_path, "wb") as f:
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
      for member, data in encoded.items():
        info = zipfile.ZipInfo(member, _ZIP_DATE)
        info.external_attr = 0o644 << 16  # Else unzip makes it unreadable.
        archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
  return zip_path
