"""Predicted masks drawn over their frames, as images and as a GIF.

Colours are the DAVIS palette (object 1 dark red, 2 green, 3 olive, ...), so
an object has the same colour in the overlay, in the result PNGs and in the
J-per-frame plot. Frames are downscaled and subsampled *before* drawing, so a
GIF of a long 480p video costs a few milliseconds per kept frame.
"""

from __future__ import annotations

import io as std_io
import os
from typing import Sequence

import numpy as np
from PIL import Image

from metavos.data import io
from metavos.runtime import files

ALPHA = 0.5  # Weight of the object colour inside a mask.


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
  """(h, w) scaled down so the longest side is at most `max_side`.

  Never scales up; `max_side <= 0` keeps the size.
  """
  longest = max(height, width)
  if max_side <= 0 or longest <= max_side:
    return height, width
  scale = max_side / longest
  return max(1, round(height * scale)), max(1, round(width * scale))


def pick_frames(num_frames: int, max_frames: int) -> list[int]:
  """At most `max_frames` evenly spaced frame indices, first and last kept."""
  if max_frames <= 0 or num_frames <= max_frames:
    return list(range(num_frames))
  if max_frames == 1:
    return [0]
  return sorted({round(i * (num_frames - 1) / (max_frames - 1))
                 for i in range(max_frames)})


def _boundary(mask: np.ndarray) -> np.ndarray:
  """Pixels whose right or lower neighbour has another id."""
  edge = np.zeros(mask.shape, bool)
  edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
  edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
  return edge


def overlay(frame: np.ndarray, mask: np.ndarray,
            alpha: float = ALPHA) -> np.ndarray:
  """Draws object ids over one frame.

  Args:
    frame: (H, W, 3) uint8 RGB.
    mask: (H, W) uint8 object ids, 0 = background (left as is).
    alpha: weight of the object colour inside an object.

  Returns:
    (H, W, 3) uint8: inside an object `(1 - alpha) * frame + alpha * colour`,
    its outline in the solid colour (outlines keep small objects visible).
  """
  if frame.shape[:2] != mask.shape:
    raise ValueError(f"frame {frame.shape[:2]} and mask {mask.shape} differ "
                     "in size")
  colours = io.davis_palette()[mask].astype(np.float32)
  out = frame.astype(np.float32)
  inside = (mask != 0)[..., None]
  out = np.where(inside, (1 - alpha) * out + alpha * colours, out)
  outline = (_boundary(mask) & (mask != 0))[..., None]
  out = np.where(outline, colours, out)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def overlay_frames(frames: np.ndarray, masks: np.ndarray, *,
                   max_frames: int = 40, max_side: int = 240
                   ) -> tuple[list[int], list[Image.Image]]:
  """Downscaled overlays of evenly spaced frames.

  Args:
    frames: (T, H, W, 3) uint8.
    masks: (T, H, W) uint8 object ids.
    max_frames: frames kept at most (see `pick_frames`).
    max_side: longest side of the output images.

  Returns:
    (kept frame indices, one RGB image per kept frame).
  """
  if frames.shape[:3] != masks.shape:
    raise ValueError(f"frames {frames.shape} and masks {masks.shape} differ")
  height, width = fit_size(frames.shape[1], frames.shape[2], max_side)
  kept = pick_frames(frames.shape[0], max_frames)
  images = []
  for t in kept:
    frame, mask = Image.fromarray(frames[t]), Image.fromarray(masks[t])
    if (height, width) != frames.shape[1:3]:
      # Nearest for ids: interpolating them would invent objects.
      frame = frame.resize((width, height), Image.Resampling.BILINEAR)
      mask = mask.resize((width, height), Image.Resampling.NEAREST)
    images.append(Image.fromarray(overlay(np.asarray(frame),
                                          np.asarray(mask))))
  return kept, images


def encode_gif(images: Sequence[Image.Image], fps: float = 6.0) -> bytes:
  """An endlessly looping GIF of `images` (each quantised to 256 colours)."""
  if not images:
    raise ValueError("encode_gif needs at least one image")
  buffer = std_io.BytesIO()
  duration = max(20, round(1000 / max(fps, 1e-3)))  # Browsers clamp < 20 ms.
  images[0].save(buffer, format="GIF", save_all=True,
                 append_images=list(images[1:]), duration=duration, loop=0)
  return buffer.getvalue()


def write_overlay_gif(path: str | os.PathLike, frames: np.ndarray,
                      masks: np.ndarray, *, max_frames: int = 40,
                      max_side: int = 240, fps: float = 6.0) -> list[int]:
  """Writes the overlay of `masks` on `frames` as a GIF, atomically.

  Args:
    path: destination .gif; parent folders are created.
    frames: (T, H, W, 3) uint8 RGB.
    masks: (T, H, W) uint8 object ids.
    max_frames: frames kept at most, evenly spaced.
    max_side: longest side of the GIF in pixels.
    fps: playback speed.

  Returns:
    The indices of the frames in the GIF.
  """
  kept, images = overlay_frames(frames, masks, max_frames=max_frames,
                                max_side=max_side)
  files.atomic_write_bytes(path, encode_gif(images, fps))
  return kept
