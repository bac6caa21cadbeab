"""Reading frames and masks, writing palette masks, and the DAVIS palette.

Every reader turns a missing, corrupt or wrongly formatted file into a
`DataError` naming the file, so a bad dataset fails on the first bad file with
a message that says how to fix it. Readers work on bytes too (`decode_*`), so
records that hold encoded files (see `tfds_builder.py`) decode exactly like the
files on disk.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib

import numpy as np
from PIL import Image

from metavos.data.errors import DataError
from metavos.runtime import files

PathLike = str | os.PathLike

# Exceptions Pillow raises for unreadable image data: UnidentifiedImageError
# and truncation are OSErrors, a bad PNG checksum is a SyntaxError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

_IMAGE_FIX = "re-extract or re-download this frame (a JPEG or PNG RGB image)"
_MASK_FIX = (
    "re-extract or re-download this annotation; masks must be 8-bit palette "
    "(mode P) or grayscale (mode L) PNGs")


@functools.cache
def _palette() -> np.ndarray:
  colours = np.zeros((256, 3), np.uint8)
  for index in range(256):
    code, rgb = index, [0, 0, 0]
    # PASCAL VOC colour map: bit 3k+c of the index becomes bit (7 - k) of
    # channel c, so small ids get saturated, well separated colours.
    for shift in range(7, -1, -1):
      for channel in range(3):
        rgb[channel] |= ((code >> channel) & 1) << shift
      code >>= 3
    colours[index] = rgb
  colours.setflags(write=False)
  return colours


def davis_palette() -> np.ndarray:
  """The DAVIS 2017 (PASCAL VOC) palette.

  Returns:
    (256, 3) uint8 RGB colours, read-only: 0 -> black, 1 -> (128, 0, 0),
    2 -> (0, 128, 0), 3 -> (128, 128, 0), ..., 255 -> (224, 224, 192).
  """
  return _palette()


def _read_bytes(path: PathLike, what: str, fix: str) -> bytes:
  try:
    return pathlib.Path(path).read_bytes()
  except FileNotFoundError:
    raise DataError(path, f"{what} file not found", fix) from None
  except IsADirectoryError:
    raise DataError(path, f"expected a {what} file, found a folder",
                    fix) from None


def _open(data: bytes, source: PathLike, what: str, fix: str) -> Image.Image:
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # Decode now: Image.open alone does not see truncation.
  except _DECODE_ERRORS as e:
    raise DataError(source, f"corrupt or truncated {what} ({e})", fix) from e
  return image


def decode_image(data: bytes, source: PathLike) -> np.ndarray:
  """Decodes an encoded image to RGB.

  Args:
    data: encoded image bytes (JPEG, PNG, ...).
    source: the file (or record) the bytes came from, named in errors.

  Returns:
    (H, W, 3) uint8 RGB; grayscale, palette and RGBA images are converted
    (alpha is dropped).
  """
  image = _open(data, source, "image", _IMAGE_FIX)
  if image.mode != "RGB":
    image = image.convert("RGB")
  return np.asarray(image, np.uint8)


def read_image(path: PathLike) -> np.ndarray:
  """Reads an image file as RGB.

  Args:
    path: image file.

  Returns:
    (H, W, 3) uint8 RGB.

  Raises:
    DataError: the file is missing, corrupt or truncated.
  """
  return decode_image(_read_bytes(path, "image", _IMAGE_FIX), path)


# A complete JPEG ends with its end-of-image marker; some writers pad a few
# bytes after it, so it is looked for in the file's last KiB.
_JPEG_END, _JPEG_TAIL = b"\xff\xd9", 1024


def check_image_file(path: PathLike) -> np.ndarray:
  """A frame's size and completeness without decoding its pixels, for the
  start-up validation of a whole split (seconds where decoding would take
  minutes) and the training index (metavos.data.pipeline).

  Args:
    path: image file.

  Returns:
    See `check_image_bytes`.

  Raises:
    DataError: the file is missing, not an image, or truncated.
  """
  return check_image_bytes(_read_bytes(path, "image", _IMAGE_FIX), path)


def check_image_bytes(data: bytes, source: PathLike) -> np.ndarray:
  """`check_image_file` for encoded bytes (e.g. a TFDS record's frame).

  Reads the header; a JPEG must end with its end-of-image marker and a PNG
  must pass Pillow's chunk checks, so truncated data fails here too.

  Args:
    data: encoded image bytes.
    source: the file or record they came from, named in errors.

  Returns:
    A read-only (H, W, 3) uint8 array of zeros (a broadcast view) with the
    frame's size: a stand-in for `read_image` in `davis.read_frames`.

  Raises:
    DataError: not an image, or truncated.
  """
  try:
    image = Image.open(io.BytesIO(data))
    size, kind = image.size, image.format
    if kind == "PNG":
      image.verify()
    elif kind == "JPEG" and _JPEG_END not in data[-_JPEG_TAIL:]:
      raise OSError("no end-of-image marker: the data is cut short")
  except _DECODE_ERRORS as e:
    raise DataError(source, f"corrupt or truncated image ({e})",
                    _IMAGE_FIX) from e
  return np.broadcast_to(np.zeros((), np.uint8), (size[1], size[0], 3))


def decode_mask_and_mode(data: bytes, source: PathLike) -> tuple[np.ndarray, str]:
  """Decodes an encoded mask, also saying how its values are to be read.

  Args:
    data: encoded PNG bytes.
    source: the file (or record) the bytes came from, named in errors.

  Returns:
    (mask, mode): (H, W) uint8 values as stored (palette indices for mode
    "P", grey levels for mode "L"; a 1-bit image becomes 0/255 "L") and the
    Pillow mode, "P" or "L".
  """
  image = _open(data, source, "mask", _MASK_FIX)
  if image.mode == "1":
    image = image.convert("L")
  if image.mode not in ("P", "L"):
    raise DataError(
        source, f"mask has image mode {image.mode!r}, not an 8-bit palette or "
        "grayscale PNG", _MASK_FIX)
  return np.asarray(image, np.uint8), image.mode


def read_mask_and_mode(path: PathLike) -> tuple[np.ndarray, str]:
  """`read_mask`, plus the PNG mode ("P" or "L") that tells ids from 0/255."""
  return decode_mask_and_mode(_read_bytes(path, "mask", _MASK_FIX), path)


def read_mask(path: PathLike) -> np.ndarray:
  """Reads a mask PNG.

  Args:
    path: palette ("P") or grayscale ("L") PNG.

  Returns:
    (H, W) uint8: palette indices for a palette PNG (object ids, 255 = void
    in DAVIS 2017), the stored grey values for an "L" PNG (0/255 in DAVIS
    2016).

  Raises:
    DataError: the file is missing, corrupt, truncated or not 8-bit P/L.
  """
  return read_mask_and_mode(path)[0]


def encode_mask_png(mask: np.ndarray, path: PathLike = "<mask>") -> bytes:
  """Encodes object ids as a palette PNG with the DAVIS palette.

  Args:
    mask: (H, W) uint8 object ids.
    path: where the bytes are going, named in errors.

  Returns:
    PNG bytes (deterministic for a given mask).

  Raises:
    DataError: `mask` is not a 2-D uint8 array.
  """
  mask = np.asarray(mask)
  if mask.dtype != np.uint8 or mask.ndim != 2:
    raise DataError(
        path, f"mask to write has dtype {mask.dtype} and shape {mask.shape}, "
        "expected a 2-D uint8 array of object ids",
        "pass mask.astype(np.uint8) after checking ids are in 0..255, with "
        "shape (H, W)")
  height, width = mask.shape
  image = Image.frombytes("P", (width, height),
                          np.ascontiguousarray(mask).tobytes())
  image.putpalette(davis_palette().tobytes())
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def write_mask_png(path: PathLike, mask: np.ndarray) -> None:
  """Writes object ids as a DAVIS palette PNG, atomically.

  Args:
    path: destination; parent folders are created.
    mask: (H, W) uint8 object ids (255 = void).

  Raises:
    DataError: `mask` is not a 2-D uint8 array (nothing is written).
  """
  files.atomic_write_bytes(path, encode_mask_png(mask, path))
