r"""Segment your own video from one annotated frame.

  python -m metavos.segment --frames=my_frames/ --mask=first.png \
    --config=configs/eosvos.py:davis16_cpu \
    --restore=runs/eosvos_davis16/checkpoints --out=my_result/

  # An animated GIF / WebP / PNG; the mask annotates frame 12:
  python -m metavos.segment --video=clip.gif --mask=frame12.png \
    --first_frame=12 --config=configs/osvos.py:davis16_cpu \
    --restore=runs/osvos_davis16 --out=my_result/

Writes `<out>/masks/<frame>.png` (DAVIS palette, named like the frames; the
frames of a video file are 00000, 00001, ...) and `<out>/overlay.gif`. The
mask is a palette PNG of object ids (DAVIS 2017) or a grayscale PNG (0/255:
one object). Objects do not exist before `first_frame`, so earlier frames are
background. Large frames cost time and memory: add
`--config.eval.input_size=240,427` to run the network at a lower
resolution. Other video formats (mp4, mov, ...): extract the frames first,

  mkdir my_frames && ffmpeg -i clip.mp4 -q:v 2 my_frames/%05d.jpg

From Python (Colab):

  from metavos import configs, segment
  pred = segment.segment_video(configs.get_config("eosvos", "smoke"), "runs/s",
                               "my_frames/", "first.png", "my_result/")
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Sequence

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image, ImageSequence

from metavos import configs
from metavos.data import davis, io, writers
from metavos.data.errors import DataError
from metavos.data.types import VOID, Video
from metavos.methods import registry
from metavos.visualize import overlay

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Containers Pillow cannot decode; frames must be extracted with ffmpeg.
NEEDS_FFMPEG = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg",
                ".mpeg", ".wmv", ".flv", ".3gp")
MASKS_DIR = "masks"
OVERLAY_GIF = "overlay.gif"
PathLike = str | os.PathLike


def _ffmpeg_fix(path: PathLike) -> str:
  return (f"extract its frames and pass the folder: mkdir frames && ffmpeg "
          f"-i {path} -q:v 2 frames/%05d.jpg, then --frames=frames")


def read_frame_folder(folder: PathLike) -> tuple[np.ndarray, list[str]]:
  """Reads every image of a folder, in name order.

  Returns:
    ((T, H, W, 3) uint8 frames, T frame stems).

  Raises:
    DataError: no folder, no image in it, an unreadable image, or frames of
      different sizes.
  """
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise DataError(folder, "frame folder not found",
                    "pass the folder holding the video's frames (--frames) "
                    "or a video file (--video)")
  paths = sorted(p for p in folder.iterdir()
                 if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
  if not paths:
    raise DataError(folder, f"no frames ({', '.join(FRAME_SUFFIXES)}) in the "
                    "folder", "put the frames here, named so that they sort "
                    "in time order (00000.jpg, 00001.jpg, ...)")
  frames = [io.read_image(p) for p in paths]  # DataError names a bad file.
  _check_same_size(frames, [str(p) for p in paths])
  return np.stack(frames), [p.stem for p in paths]


def read_video_file(path: PathLike) -> tuple[np.ndarray, list[str]]:
  """Decodes an animated GIF, WebP or PNG (anything Pillow reads) to frames.

  Returns:
    ((T, H, W, 3) uint8 frames, stems "00000", "00001", ...).

  Raises:
    DataError: missing or undecodable file, or a container Pillow cannot
      read (mp4, ...), with the ffmpeg command that extracts the frames.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(path, "video file not found", "check the --video path")
  if path.suffix.lower() in NEEDS_FFMPEG:
    raise DataError(path, f"{path.suffix} videos cannot be decoded without "
                    "ffmpeg (metavos reads GIF, WebP and PNG animations and "
                    "frame folders)", _ffmpeg_fix(path))
  try:
    with Image.open(path) as image:
      frames = [np.asarray(f.convert("RGB"), np.uint8)
                for f in ImageSequence.Iterator(image)]
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    raise DataError(path, f"cannot decode the video ({e})",
                    _ffmpeg_fix(path)) from e
  return np.stack(frames), [f"{t:05d}" for t in range(len(frames))]


def _check_same_size(frames: Sequence[np.ndarray], sources: Sequence[str]):
  for frame, source in zip(frames, sources):
    if frame.shape != frames[0].shape:
      raise DataError(source, f"frame is {frame.shape[0]}x{frame.shape[1]} "
                      f"but {sources[0]} is {frames[0].shape[0]}x"
                      f"{frames[0].shape[1]}", "all frames of a video must "
                      "have one size; re-extract them")


def load_frames(frames_or_path) -> tuple[np.ndarray, list[str], str]:
  """Frames from a folder, a video file or a (T, H, W, 3) uint8 array.

  Returns:
    (frames, frame stems, a name for the source used in errors).
  """
  if isinstance(frames_or_path, (str, os.PathLike)):
    path = pathlib.Path(frames_or_path)
    if not path.exists():  # --frames and --video both come here.
      raise DataError(path, "no such frame folder or video file",
                      "pass --frames=<folder of the video's frames> or "
                      "--video=<video file>")
    frames, names = (read_frame_folder(path) if path.is_dir()
                     else read_video_file(path))
    return frames, names, str(path)
  frames = np.asarray(frames_or_path)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got "
                     f"{frames.dtype} {frames.shape}")
  return frames, [f"{t:05d}" for t in range(len(frames))], "<frames array>"


def load_first_mask(mask_or_path, frame_size: tuple[int, int],
                    frame_name: str) -> np.ndarray:
  """The annotated frame's object ids, checked against the frames.

  Args:
    mask_or_path: a palette PNG of ids, a grayscale 0/255 PNG (one object)
      or an (H, W) integer array of ids.
    frame_size: (H, W) of the frames.
    frame_name: the frame the mask annotates, named in errors.

  Returns:
    (H, W) uint8 ids, 0 = background, 255 = void.

  Raises:
    DataError: unreadable, of another size than the frames, or empty.
  """
  if isinstance(mask_or_path, (str, os.PathLike)):
    source = str(mask_or_path)
    raw, mode = io.read_mask_and_mode(mask_or_path)
    mask = davis.mask_to_ids(raw, mode, year=2017, path=source)
  else:
    source, mask = "<mask array>", np.asarray(mask_or_path)
    if mask.ndim != 2 or mask.min() < 0 or mask.max() > 255:
      raise ValueError(f"mask must be an (H, W) array of ids in 0..255, got "
                       f"shape {mask.shape}")
    mask = mask.astype(np.uint8)
  if mask.shape != tuple(frame_size):
    raise DataError(source, f"mask is {mask.shape[0]}x{mask.shape[1]} but the "
                    f"frames are {frame_size[0]}x{frame_size[1]}",
                    f"annotate frame {frame_name} at the frames' resolution "
                    "(or resize the mask with nearest-neighbour)")
  if not davis.object_ids_in(mask):
    raise DataError(source, "mask contains no object", "paint at least one "
                    "object with a nonzero id (255 is void) on the annotated "
                    "frame")
  return mask


def make_video(name: str, frames: np.ndarray, frame_names: Sequence[str],
               mask: np.ndarray, first_frame: int) -> Video:
  """A `Video` whose only annotation is `mask` at frame `first_frame`
  (an index into `frames`)."""
  masks = np.zeros(frames.shape[:3], np.uint8)
  masks[first_frame] = mask
  annotated = np.zeros(len(frames), bool)
  annotated[first_frame] = True
  ids = sorted(davis.object_ids_in(mask))
  return Video(name=name, frames=frames, masks=masks, annotated=annotated,
               frame_names=tuple(frame_names), object_ids=tuple(ids),
               first_frame=dict.fromkeys(ids, first_frame))


def segment_video(config: ml_collections.ConfigDict, restore: PathLike,
                  frames_or_path, first_mask, out_dir: PathLike, *,
                  first_frame: int = 0, gif_max_side: int = 480
                  ) -> np.ndarray:
  """Segments one video from one annotated frame with a trained method.

  The method is `config.method`, built through the method registry with
  parameters from `restore`; the random key is the one the evaluation loop
  gives its first video, so a video of a dataset segments as in evaluation.

  Args:
    config: the method's config (configs/<method>.py).
    restore: a checkpoint: a run's workdir, its checkpoints/ or a step dir.
    frames_or_path: a frame folder, a GIF/WebP/PNG animation, or a
      (T, H, W, 3) uint8 array.
    first_mask: the mask of frame `first_frame` (path or (H, W) ids).
    out_dir: gets masks/<frame>.png and overlay.gif.
    first_frame: the index of the annotated frame.
    gif_max_side: longest side of the overlay GIF in pixels.

  Returns:
    (T, H, W) uint8 predicted object ids.
  """
  frames, names, source = load_frames(frames_or_path)
  if not 0 <= first_frame < len(frames):
    raise DataError(source, f"first_frame={first_frame} but the video has "
                    f"{len(frames)} frames", f"pass --first_frame in 0.."
                    f"{len(frames) - 1}")
  mask = load_first_mask(first_mask, frames.shape[1:3], names[first_frame])
  video = make_video(pathlib.Path(source).stem or "video", frames, names,
                     mask, first_frame)
  config = config.copy_and_resolve_references()
  config.restore = os.fspath(restore)
  # workdir=restore: a run's workdir is read from its checkpoints/, other
  # forms through config.restore; never from out_dir.
  bound = registry.load_segmenter(config.method)(config, config.restore)
  rng = jax.random.fold_in(jax.random.key(config.seed + 1), 0)
  pred, _ = bound.segment(video, rng)
  # The given frame keeps its given mask, whatever the method predicts.
  pred[first_frame] = np.where(mask == VOID, 0, mask)
  writers.write_davis_results(out_dir, MASKS_DIR, names, pred)
  overlay.write_overlay_gif(pathlib.Path(out_dir) / OVERLAY_GIF, frames, pred,
                            max_frames=0, max_side=gif_max_side)
  return pred


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Defined only when run as a program: importing this module (a notebook,
  metavos.main) must not claim --config and friends."""
  config_flags.DEFINE_config_file(
      "config", None, "configs/<method>.py[:arg]", lock_config=True)
  flags.DEFINE_string("frames", None, "Folder of frames, in name order.")
  flags.DEFINE_string("video", None, "Animated GIF/WebP/PNG (else --frames).")
  flags.DEFINE_string("mask", None, "Mask PNG of the annotated frame.")
  flags.DEFINE_integer("first_frame", 0, "Index of the annotated frame.")
  flags.DEFINE_string("restore", None, "Checkpoint: workdir, checkpoints/ "
                      "or a step directory.")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.mark_flags_as_required(["config", "mask", "restore", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if (FLAGS.frames is None) == (FLAGS.video is None):
    raise app.UsageError("Pass exactly one of --frames=DIR or --video=FILE.")
  try:
    pred = segment_video(FLAGS.config, FLAGS.restore,
                         FLAGS.frames or FLAGS.video, FLAGS.mask, FLAGS.out,
                         first_frame=FLAGS.first_frame)
  except DataError as e:  # A user's input: the message says what to do.
    raise app.UsageError(str(e)) from e
  out = pathlib.Path(FLAGS.out)
  print(f"Wrote {len(pred)} masks to {out / MASKS_DIR} and the overlay to "
        f"{out / OVERLAY_GIF}.", flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main, argv=configs.find_config_files(sys.argv))
