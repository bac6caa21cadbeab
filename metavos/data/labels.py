"""Label sets: the training frames whose masks a method may read.

Every label-efficient method (and fully supervised STCN, with every frame)
trains from a label set, a JSON object a user can also write by hand:

  {"bear": [0], "bmx-trees": [0, 40]}

keys are training sequences, values 0-based frame indices that have a
ground-truth mask. A sequence left out has no labelled frame. A run writes
the set it used to `<workdir>/labels.json` and logs the labelled fraction
(`record`), so any run can be repeated with exactly its labels
(`config.labels.kind="file"`, `config.labels.file=<that file>`).
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

from metavos.data.errors import DataError
from metavos.runtime import files

LabelSet = dict[str, list[int]]  # sequence -> sorted labelled frame indices
FILE_NAME = "labels.json"
KINDS = ("all", "first", "random", "file")


def _annotated(video) -> np.ndarray:
  return np.flatnonzero(np.asarray(video.annotated, bool))


def validate(raw: Any, videos: Sequence, path: str = "<label set>"
             ) -> LabelSet:
  """Checks a label set against the videos and normalises it.

  Args:
    raw: the parsed JSON (a dict of sequence -> list of frame indices).
    videos: the training videos (anything with `name` and `annotated`).
    path: the file the set came from, for error messages.

  Returns:
    {sequence: sorted unique frame indices}.

  Raises:
    DataError: naming the file, the problem and the fix.
  """
  if not isinstance(raw, dict):
    raise DataError(path, f"is a JSON {type(raw).__name__}, not an object",
                    'write {"<sequence>": [<frame index>, ...], ...}')
  by_name = {v.name: v for v in videos}
  out = {}
  for name, frames in raw.items():
    if name not in by_name:
      known = ", ".join(sorted(by_name)[:5])
      raise DataError(path, f"sequence {name!r} is not a training sequence",
                      f"remove it or fix its name (known: {known}, ...); "
                      "check config.data.train_split")
    if not isinstance(frames, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in frames):
      raise DataError(path, f"{name}: {frames!r} is not a list of integers",
                      f'write "{name}": [0, 10, ...] (0-based frame indices)')
    v = by_name[name]
    num = len(v.annotated)
    for t in frames:
      if not 0 <= t < num:
        raise DataError(path, f"{name}: frame {t} is out of range (the "
                        f"sequence has {num} frames)",
                        f"use 0-based indices in [0, {num - 1}]")
      if not v.annotated[t]:
        raise DataError(path, f"{name}: frame {t} has no ground-truth mask",
                        "label only annotated frames (e.g. "
                        f"{_annotated(v)[:5].tolist()})")
    out[name] = sorted(set(frames))
  return out


def load(path: str | os.PathLike, videos: Sequence) -> LabelSet:
  """Reads and validates a label-set JSON file."""
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except FileNotFoundError as e:
    raise DataError(path, "does not exist", "write the label set there or "
                    "fix config.labels.file") from e
  except json.JSONDecodeError as e:
    raise DataError(path, f"is not valid JSON ({e})",
                    'write {"<sequence>": [<frame index>, ...]}') from e
  return validate(raw, videos, path)


def save(path: str | os.PathLike, label_set: Mapping[str, Sequence[int]]
         ) -> None:
  """Writes a label set atomically (sorted, one sequence a line)."""
  body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(sorted(map(int, v)))}"
                    for k, v in sorted(label_set.items()))
  files.atomic_write_text(path, "{\n" + body + "\n}\n")


def all_frames_label_set(videos: Sequence) -> LabelSet:
  """Every annotated frame (full supervision)."""
  return {v.name: _annotated(v).tolist() for v in videos}


def first_frame_label_set(videos: Sequence) -> LabelSet:
  """Each video's first annotated frame (one-shot training)."""
  return {v.name: _annotated(v)[:1].tolist() for v in videos}


def random_label_set(videos: Sequence, per_video: int, seed: int) -> LabelSet:
  """`per_video` annotated frames per video, drawn at random (all of them if
  a video has fewer). A video's draw depends only on (seed, its name), not
  on which other videos are in the split."""
  out = {}
  for v in videos:
    ann = _annotated(v)
    rng = np.random.default_rng([seed, zlib.crc32(v.name.encode())])
    pick = rng.choice(ann, size=min(per_video, len(ann)), replace=False)
    out[v.name] = sorted(int(t) for t in pick)
  return out


def labelled_fraction(label_set: Mapping[str, Sequence[int]],
                      videos: Sequence) -> float:
  """Labelled frames over annotated frames of `videos` (1.0 = full
  supervision)."""
  total = sum(len(_annotated(v)) for v in videos)
  names = {v.name for v in videos}
  used = sum(len(set(f)) for n, f in label_set.items() if n in names)
  return used / max(total, 1)


def from_config(cfg, videos: Sequence) -> LabelSet:
  """The label set a `labels` config block names (kind, per_video, seed,
  file)."""
  if cfg.kind == "all":
    return all_frames_label_set(videos)
  if cfg.kind == "first":
    return first_frame_label_set(videos)
  if cfg.kind == "random":
    return random_label_set(videos, cfg.per_video, cfg.seed)
  if cfg.kind == "file":
    if not cfg.file:
      raise ValueError("config.labels.kind='file' needs config.labels.file "
                       "(a JSON {sequence: [frames]}).")
    return load(cfg.file, videos)
  raise ValueError(f"config.labels.kind must be one of {KINDS}, got "
                   f"{cfg.kind!r}.")


def record(workdir: str, label_set: Mapping[str, Sequence[int]],
           videos: Sequence) -> float:
  """Writes `<workdir>/labels.json`, logs and returns the labelled fraction.

  Every method that trains from a label set calls this once before
  training; the fraction also goes into each metrics line.
  """
  save(os.path.join(workdir, FILE_NAME), label_set)
  fraction = labelled_fraction(label_set, videos)
  n = sum(len(f) for f in label_set.values())
  logging.info("Label set: %d labelled frames in %d sequences, %.4f of the "
               "annotated training frames (%s)", n,
               sum(bool(f) for f in label_set.values()), fraction,
               os.path.join(workdir, FILE_NAME))
  return fraction


def setup_label_set(cfg, workdir: str, videos: Sequence
                    ) -> tuple[LabelSet, float]:
  """What a label-efficient trainer does first: the label set of the
  `labels` config block, recorded in the workdir.

  Returns:
    (label set, labelled fraction).
  """
  label_set = from_config(cfg, videos)
  return label_set, record(workdir, label_set, videos)
