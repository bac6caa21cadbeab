"""Synthetic multi-object videos written in the DAVIS 2017 layout.

Each video shows 1..`max_objects` textured blobs over a textured, panning
background. A blob is star-shaped: its boundary radius is
`r(theta, t) = 1 + sum_k a_k(t) cos(k (theta - spin t) + phi_k(t))` times a
scale `s(t)`, and the harmonic amplitudes `a_k(t)` and phases `phi_k(t)` drift
smoothly, so shapes deform non-rigidly while the blobs translate, scale and
rotate. Blobs are painted back to front, so nearer ones occlude farther ones,
and the ground truth is the visible id map of every frame.

Guarantees (checked by tests):
  * every object covers at least `_MIN_FIRST_AREA` pixels and 30% of its
    shape in frame 0, so first-frame masks are never empty;
  * in every video with >= 3 frames, one object (the "wanderer", drawn in
    front) travels out of the frame, is fully outside for at least one frame
    and is back inside in the last frame;
  * with >= 2 objects, candidate videos are redrawn (deterministically) until
    some object is partly hidden behind another, up to `_MAX_TRIES` draws.

Knobs of `generate` / `ensure`:
  num_videos, num_frames, height, width: dataset and frame size.
  max_objects: objects per video are drawn from [min(2, max_objects),
    max_objects]; ids are 1..n.
  seed: same seed and knobs -> byte-identical files (on one software stack).
  splits: split name -> number of videos, taken in order; the counts must sum
    to num_videos. Default: a third for "val", the rest for "train".
  resolution: the resolution folder name ("480p" by default).

Split files are written to ImageSets/2017/ and, identically, ImageSets/2016/,
like the real DAVIS 2017 release, so `DavisDataset(year=2016)` also works.
"""

from __future__ import annotations

import dataclasses
import inspect
import io as pyio
import json
import math
import pathlib
from collections.abc import Mapping

import numpy as np
from PIL import Image

from metavos.data import io
from metavos.data.errors import DataError
from metavos.runtime import files

GENERATOR_VERSION = 1  # Bump when output bytes change; `ensure` compares it.
MARKER = ".complete"
_NUM_HARMONICS = 3
_MIN_FIRST_AREA = 4
_MAX_TRIES = 64
_JPEG_QUALITY = 90


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
  """One generated video before encoding.

  Attributes:
    frames: (T, H, W, 3) uint8 RGB (before JPEG compression).
    masks: (T, H, W) uint8 visible object ids.
    amodal: (K, T, H, W) bool full shape of object k + 1, hidden parts
      included (clipped to the frame).
    wanderer: id of the object that leaves and re-enters the frame.
  """

  frames: np.ndarray
  masks: np.ndarray
  amodal: np.ndarray
  wanderer: int


@dataclasses.dataclass(frozen=True)
class _Blob:
  """Motion, shape and texture parameters of one object (pixels, frames)."""

  center: np.ndarray  # (2,) (y, x) at t = 0.
  velocity: np.ndarray  # (2,) per frame.
  excursion: np.ndarray  # (2,) peak out-and-back displacement.
  radius: float
  scale_amp: float
  scale_freq: float
  scale_phase: float
  angle: float
  spin: float
  amps: np.ndarray  # (_NUM_HARMONICS,) each harmonic's base amplitude.
  amp_freqs: np.ndarray
  amp_phases: np.ndarray
  phases: np.ndarray
  phase_drift: np.ndarray
  colours: np.ndarray  # (2, 3) texture colours.
  stripes: np.ndarray  # (3,) texture frequencies.

  def extent(self) -> float:
    """Upper bound on the distance from the centre to the boundary."""
    return self.radius * (1 + self.scale_amp) * (1 + 1.5 * self.amps.sum())


def _draw_blob(rng: np.random.Generator, height: int, width: int) -> _Blob:
  short = min(height, width)
  radius = rng.uniform(0.12, 0.22) * short
  margin = 0.8 * radius
  return _Blob(
      center=np.array([rng.uniform(margin, height - margin),
                       rng.uniform(margin, width - margin)]),
      velocity=rng.normal(0, 0.02 * short, 2), excursion=np.zeros(2),
      radius=radius, scale_amp=rng.uniform(0.05, 0.25),
      scale_freq=rng.uniform(0.2, 0.8), scale_phase=rng.uniform(0, 2 * np.pi),
      angle=rng.uniform(0, 2 * np.pi), spin=rng.uniform(-0.2, 0.2),
      amps=rng.dirichlet(np.ones(_NUM_HARMONICS)) * rng.uniform(0.15, 0.35),
      amp_freqs=rng.uniform(0.2, 0.9, _NUM_HARMONICS),
      amp_phases=rng.uniform(0, 2 * np.pi, _NUM_HARMONICS),
      phases=rng.uniform(0, 2 * np.pi, _NUM_HARMONICS),
      phase_drift=rng.uniform(-0.3, 0.3, _NUM_HARMONICS),
      colours=rng.uniform(0, 255, (2, 3)),
      stripes=rng.uniform(2, 9, 3))


def _out_and_back(t: np.ndarray | float, num_frames: int) -> np.ndarray:
  """0 at the first and last frame, peaking mid-video (the excursion shape)."""
  return np.sin(np.pi * np.asarray(t, float) / max(num_frames - 1, 1))


def _make_wanderer(blob: _Blob, height: int, width: int,
                   num_frames: int) -> _Blob:
  """Makes `blob` leave the frame completely and come back by the end."""
  # It exits through its nearest border, which keeps the motion short.
  y, x = blob.center
  borders = [(0, 1.0, height - y), (0, -1.0, y), (1, 1.0, width - x),
             (1, -1.0, x)]
  axis, sign, to_border = min(borders, key=lambda b: b[2])
  peak = _out_and_back(np.arange(num_frames), num_frames).max()
  excursion = np.zeros(2)
  excursion[axis] = sign * (to_border + blob.extent() + 2) / max(peak, 1e-6)
  # Zero drift, so it ends where it started: inside the frame.
  return dataclasses.replace(blob, velocity=np.zeros(2), excursion=excursion)


def _pose(blob: _Blob, t: int,
          num_frames: int) -> tuple[np.ndarray, float, float]:
  centre = blob.center + blob.velocity * t + blob.excursion * _out_and_back(
      t, num_frames)
  scale = blob.radius * (1 + blob.scale_amp * np.sin(
      blob.scale_freq * t + blob.scale_phase))
  return centre, float(scale), blob.angle + blob.spin * t


def _local_coords(blob: _Blob, t: int, num_frames: int, grid: np.ndarray):
  """Pixel coordinates in the blob's rotated, scaled frame: (u, v)."""
  centre, scale, angle = _pose(blob, t, num_frames)
  dy, dx = grid[0] - centre[0], grid[1] - centre[1]
  cos, sin = math.cos(angle), math.sin(angle)
  return (dx * cos + dy * sin) / scale, (dy * cos - dx * sin) / scale


def _shape(blob: _Blob, t: int, num_frames: int, grid: np.ndarray) -> np.ndarray:
  u, v = _local_coords(blob, t, num_frames, grid)
  theta = np.arctan2(v, u)
  amps = blob.amps * (1 + 0.5 * np.sin(blob.amp_freqs * t + blob.amp_phases))
  phases = blob.phases + blob.phase_drift * t
  boundary = np.ones_like(theta)
  for k in range(_NUM_HARMONICS):
    boundary += amps[k] * np.cos((k + 2) * theta + phases[k])
  return np.hypot(u, v) < boundary


def _texture(blob: _Blob, t: int, num_frames: int,
             grid: np.ndarray) -> np.ndarray:
  u, v = _local_coords(blob, t, num_frames, grid)
  f = blob.stripes
  pattern = 0.5 + 0.5 * np.sin(f[0] * u + f[1] * v) * np.cos(f[2] * v)
  low, high = blob.colours
  return low + (high - low) * pattern[..., None]


def _background(rng: np.random.Generator, grid: np.ndarray):
  """Panning gratings plus fine grain; returns a function t -> (H, W, 3)."""
  waves = rng.normal(0, 0.25, (3, 2))
  phases = rng.uniform(0, 2 * np.pi, 3)
  colours = rng.uniform(0, 255, (2, 3))
  pan = rng.normal(0, 1.5, 2)
  grain = rng.normal(0, 8, grid.shape[1:] + (3,))

  def frame(t: int) -> np.ndarray:
    y, x = grid[0] - pan[0] * t, grid[1] - pan[1] * t
    pattern = sum(np.sin(w[0] * y + w[1] * x + p) for w, p in zip(waves, phases))
    pattern = (pattern / 3 + 1) / 2
    # The grain moves with the gratings (whole pixels, wrapping around).
    shift = tuple(int(round(p * t)) for p in pan)
    return (colours[0] + (colours[1] - colours[0]) * pattern[..., None]
            + np.roll(grain, shift, axis=(0, 1)))

  return frame


def _visible(amodal: np.ndarray, order: list[int]) -> np.ndarray:
  """Paints shapes back to front; returns (T, H, W) visible ids."""
  masks = np.zeros(amodal.shape[1:], np.uint8)
  for k in order:
    masks[amodal[k]] = k + 1
  return masks


def _acceptable(amodal: np.ndarray, masks: np.ndarray) -> bool:
  for k in range(amodal.shape[0]):
    visible = np.count_nonzero(masks[0] == k + 1)
    if visible < max(_MIN_FIRST_AREA, 0.3 * np.count_nonzero(amodal[k, 0])):
      return False
  if amodal.shape[0] < 2:
    return True
  ids = np.arange(1, amodal.shape[0] + 1)[:, None, None, None]
  hidden = amodal & (masks[None] != ids)
  return bool(hidden.any())


def sample_video(seed: int, index: int, *, num_frames: int = 12,
                 height: int = 96, width: int = 160,
                 max_objects: int = 3) -> SyntheticVideo:
  """Draws video `index` of the dataset with seed `seed`.

  Args:
    seed: dataset seed.
    index: video index; each video has its own random stream, so video i is
      the same whatever `num_videos` is.
    num_frames: frames per video.
    height: frame height in pixels.
    width: frame width in pixels.
    max_objects: at most this many objects (at least min(2, max_objects)).

  Returns:
    The video's frames, visible ids and full shapes.
  """
  if max_objects < 1 or num_frames < 1:
    raise ValueError("need max_objects >= 1 and num_frames >= 1")
  rng = np.random.default_rng([seed, index])
  grid = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
  num_objects = int(rng.integers(min(2, max_objects), max_objects + 1))
  for _ in range(_MAX_TRIES):
    blobs = [_draw_blob(rng, height, width) for _ in range(num_objects)]
    wanderer = int(rng.integers(num_objects))
    if num_frames >= 3:
      blobs[wanderer] = _make_wanderer(blobs[wanderer], height, width,
                                       num_frames)
    behind = [k for k in rng.permutation(num_objects) if k != wanderer]
    order = [int(k) for k in behind] + [wanderer]  # Wanderer drawn last.
    amodal = np.stack([np.stack([_shape(b, t, num_frames, grid)
                                 for t in range(num_frames)]) for b in blobs])
    masks = _visible(amodal, order)
    if _acceptable(amodal, masks):
      break
  background = _background(rng, grid)
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    image = background(t)
    for k in order:
      inside = amodal[k, t]
      image[inside] = _texture(blobs[k], t, num_frames, grid)[inside]
    frames[t] = np.clip(image, 0, 255).round().astype(np.uint8)
  return SyntheticVideo(frames=frames, masks=masks, amodal=amodal,
                        wanderer=wanderer + 1)


def _split_counts(splits: Mapping[str, int] | None,
                  num_videos: int) -> dict[str, int]:
  if splits is None:
    return {"train": num_videos - num_videos // 3, "val": num_videos // 3}
  if sum(splits.values()) != num_videos or min(splits.values(), default=0) < 0:
    raise ValueError(f"split counts {dict(splits)} must be >= 0 and sum to "
                     f"num_videos={num_videos}")
  return dict(splits)


def _encode_jpeg(frame: np.ndarray) -> bytes:
  buffer = pyio.BytesIO()
  Image.fromarray(frame).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
  return buffer.getvalue()


def sequence_name(index: int) -> str:
  """Name of synthetic video `index`, e.g. "synthetic-003"."""
  return f"synthetic-{index:03d}"


def generate(root, *, num_videos: int = 6, num_frames: int = 12,
             height: int = 96, width: int = 160, max_objects: int = 3,
             seed: int = 0, splits: Mapping[str, int] | None = None,
             resolution: str = "480p") -> pathlib.Path:
  """Writes a synthetic dataset in the DAVIS 2017 layout.

  Every file is written atomically; files of other names under `root` are
  left alone. Knobs are described in the module docstring.

  Args:
    root: output folder (created).
    num_videos: number of sequences.
    num_frames: frames per sequence.
    height: frame height.
    width: frame width.
    max_objects: most objects per sequence.
    seed: random seed.
    splits: split name -> number of sequences (in order), summing to
      `num_videos`; default about 2/3 "train", 1/3 "val".
    resolution: resolution folder name.

  Returns:
    `root` as a Path.
  """
  root = pathlib.Path(root)
  counts = _split_counts(splits, num_videos)
  names = [sequence_name(i) for i in range(num_videos)]
  for i, name in enumerate(names):
    video = sample_video(seed, i, num_frames=num_frames, height=height,
                         width=width, max_objects=max_objects)
    for t in range(num_frames):
      stem = f"{t:05d}"
      files.atomic_write_bytes(
          root / "JPEGImages" / resolution / name / f"{stem}.jpg",
          _encode_jpeg(video.frames[t]))
      io.write_mask_png(root / "Annotations" / resolution / name / f"{stem}.png",
                        video.masks[t])
  start = 0
  for split, count in counts.items():
    text = "".join(f"{n}\n" for n in names[start:start + count])
    start += count
    for year in ("2016", "2017"):
      files.atomic_write_text(root / "ImageSets" / year / f"{split}.txt", text)
  return root


def ensure(root, **kwargs) -> pathlib.Path:
  """Generates the dataset unless `root` already holds it, complete.

  A `.complete` marker holding the settings is written last, so a crashed
  run is redone; safe to call from every process (all write the same bytes).

  Args:
    root: output folder.
    **kwargs: `generate` keyword arguments.

  Returns:
    `root` as a Path.

  Raises:
    DataError: `root` holds a complete dataset made with other settings.
  """
  root = pathlib.Path(root)
  # Defaults are filled in, so ensure(root) and ensure(root, seed=0) agree.
  bound = inspect.signature(generate).bind(root, **kwargs)
  bound.apply_defaults()
  knobs = {k: v for k, v in bound.arguments.items() if k != "root"}
  knobs["splits"] = _split_counts(knobs["splits"], knobs["num_videos"])
  settings = json.dumps({"generator_version": GENERATOR_VERSION, **knobs},
                        sort_keys=True)
  marker = root / MARKER
  if marker.is_file():
    if marker.read_text() == settings:
      return root
    raise DataError(marker, f"dataset was generated with settings "
                    f"{marker.read_text()}, not {settings}",
                    "delete the folder to regenerate it, or use another root")
  generate(root, **kwargs)
  files.atomic_write_text(marker, settings)
  return root
