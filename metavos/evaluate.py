r"""Scores a folder of DAVIS result PNGs with the official J and F measures.

  python -m metavos.evaluate --results_dir=R --data_root=ROOT --year=2017 \
      --split=val --resolution=480p [--output=metrics.json]

`results_dir` holds one folder per sequence of the split, each with one PNG
per frame named like the ground-truth annotations (00001.png, ...). DAVIS
2017: palette indices are object ids (those of the first frame, 0 =
background). DAVIS 2016 (`--year=2016`): every nonzero pixel, of a result and
of the ground truth, is the one object (ground-truth void stays void). The
first and last frames are not scored, so their PNGs may be missing.

Prints a per-object table and the global scores; writes the official CSVs
`global_results-<split>.csv` and `per-sequence_results-<split>.csv` next to
`--output` (default: in results_dir), and the `metavos.metrics.davis.summarize`
JSON to `--output` (default: <results_dir>/metrics.json). All writes are
atomic. The logic is `evaluate_results_dir`, importable from a notebook.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np
from absl import app, flags
from PIL import Image

from metavos.data import davis as davis_data
from metavos.data import io, writers
from metavos.data.errors import DataError
from metavos.data.types import Video
from metavos.metrics import davis as metrics
from metavos.runtime import files

PathLike = str | pathlib.Path


def _frame_size_only(path: str) -> np.ndarray:
  """Image reader for the DAVIS loader that decodes only the header.

  Scoring needs the masks, not the pixels; the loader still checks that every
  mask has its frame's size.
  """
  try:
    with Image.open(path) as image:
      width, height = image.size
  except (OSError, SyntaxError, ValueError) as e:
    raise DataError(path, f"unreadable frame ({e})",
                    "re-extract or re-download this frame") from e
  return np.zeros((height, width, 3), np.uint8)


def load_ground_truth(dataset: davis_data.DavisDataset, name: str) -> Video:
  """`dataset.load(name)` without decoding the JPEG frames (they are zeros)."""
  return davis_data.davis_video(
      name, dataset.frame_files(name), year=dataset.year,
      allow_new_objects=dataset.allow_new_objects,
      read_image=_frame_size_only)


def _check_sequences(results_dir: pathlib.Path, sequences: Sequence[str],
                     split: str) -> None:
  if not results_dir.is_dir():
    raise DataError(results_dir, "results folder not found",
                    "pass the folder holding one sub-folder of PNGs per "
                    "sequence")
  missing = [s for s in sequences if not (results_dir / s).is_dir()]
  if missing:
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    raise DataError(
        results_dir / missing[0],
        f"no results for {len(missing)} of the {len(sequences)} sequences of "
        f"split {split!r} ({shown})",
        "segment every sequence of the split (one folder of PNGs per "
        "sequence), or evaluate the split you segmented")


PROVENANCE = "provenance.json"  # written by metavos's evaluation, last


def check_one_evaluation(results_dir: pathlib.Path,
                         sequences: Sequence[str]) -> dict | None:
  """Refuses a results folder that does not come from one evaluation.

  metavos writes a folder's masks to `results.partial/`, then its
  `provenance.json` (checkpoint step, config, and each sequence's
  `writers.sequence_digest`), then swaps it in. So a `*.partial` folder is
  unfinished, and a sequence missing from `provenance.json` or whose PNGs
  no longer match its digest was put there afterwards: the folder mixes
  evaluations. Folders without `provenance.json` (other tools' results)
  are not checked.

  Returns:
    The provenance record, or None when there is none.
  """
  if results_dir.name.endswith(".partial"):
    raise DataError(results_dir, "an evaluation that did not finish (it "
                    "was stopped before swapping its results in)",
                    "run the evaluation again and score the results/ "
                    "folder it completes")
  path = results_dir / PROVENANCE
  if not path.is_file():
    return None
  try:
    record = json.loads(path.read_text(encoding="utf-8"))
    listed = set(record["sequences"])
    digests = dict(record.get("digests", {}))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DataError(path, f"unreadable provenance record ({e})",
                    "re-run the evaluation that wrote this folder") from e
  step = record.get("checkpoint_step")
  which = f"the evaluation of checkpoint step {step}" if step is not None \
      else "the evaluation recorded there"
  fix = ("re-evaluate into a fresh workdir; or, if you assembled this folder "
         f"on purpose, delete {PROVENANCE}")
  extra = [s for s in sequences if s not in listed]
  if extra:
    raise DataError(path, f"sequences {extra[:5]} were not written by {which}:"
                    " the folder mixes evaluations", fix)
  for name in sequences:
    if name in digests and (writers.sequence_digest(results_dir / name)
                            != digests[name]):
      raise DataError(results_dir / name, f"its PNGs are not those {which} "
                      f"wrote ({PROVENANCE}): the folder mixes evaluations",
                      fix)
  return record


def _read_pngs(sequence_dir: pathlib.Path, frame_names: Sequence[str],
               name: str) -> list[tuple[pathlib.Path, np.ndarray]]:
  """(path, raw values) of the result PNGs of frames 1..T-2."""
  pngs = []
  for stem in frame_names[1:-1]:
    path = sequence_dir / f"{stem}.png"
    if not path.is_file():
      raise DataError(
          path, f"missing result for frame {stem} of {name}", "write one PNG "
          "per frame, named like the annotations; all frames but the first "
          f"and the last ({frame_names[0]}, {frame_names[-1]}) are scored")
    pngs.append((path, io.read_mask(path)))
  return pngs


def _as_ids(pngs: Sequence[tuple[pathlib.Path, np.ndarray]], video: Video,
            year: int) -> np.ndarray:
  """Checks result PNGs against the ground truth; stacks them as ids."""
  height, width = video.size
  last_id = max(video.object_ids)
  pred = np.zeros((video.num_frames, height, width), np.uint8)
  for t, (path, mask) in enumerate(pngs, start=1):
    if mask.shape != (height, width):
      raise DataError(
          path, f"result is {mask.shape[0]}x{mask.shape[1]} but the ground "
          f"truth is {height}x{width}", "save results at the resolution of "
          "the annotations (check --resolution), resizing with "
          "nearest-neighbour")
    if year == 2016:
      pred[t] = mask != 0
    elif int(mask.max()) > last_id:
      raise DataError(
          path, f"result holds object id {int(mask.max())} but {video.name} "
          f"has objects {list(video.object_ids)}", "write palette PNGs whose "
          "indices are the first frame's object ids (0 = background); a "
          "0/255 grayscale mask reads as id 255")
    else:
      pred[t] = mask
  return pred


def read_results(sequence_dir: PathLike, video: Video, year: int) -> np.ndarray:
  """Reads a sequence's result PNGs as object ids.

  Args:
    sequence_dir: folder with <frame name>.png for frames 1..T-2.
    video: the sequence's ground truth (names, size, objects).
    year: 2016 makes every nonzero pixel object 1.

  Returns:
    (T, H, W) uint8 ids; frames 0 and T-1 (not scored) are zeros.

  Raises:
    DataError: a PNG is missing, unreadable, of another size than the
      ground truth, or holds an id above the sequence's objects.
  """
  pngs = _read_pngs(pathlib.Path(sequence_dir), video.frame_names, video.name)
  return _as_ids(pngs, video, year)


def _ground_truth(dataset: davis_data.DavisDataset, name: str) -> Video:
  video = load_ground_truth(dataset, name)
  if not video.annotated.all():
    missing = video.frame_names[int(np.argmin(video.annotated))]
    raise DataError(
        dataset.root / "Annotations" / dataset.resolution / name /
        f"{missing}.png", "ground truth missing: DAVIS scores every frame",
        "restore the annotation, or evaluate a fully annotated split")
  return video


def evaluate_results_dir(results_dir: PathLike, data_root: PathLike,
                         year: int = 2017, split: str = "val",
                         resolution: str = "480p", *, bound_th: float = 0.008,
                         exclude_void: bool = False) -> dict:
  """Scores every sequence of a DAVIS split.

  Args:
    results_dir: one folder of result PNGs per sequence.
    data_root: DAVIS root (JPEGImages/, Annotations/, ImageSets/).
    year: 2016 (one object: every nonzero pixel) or 2017 (object ids).
    split: split name, e.g. "val".
    resolution: resolution folder, e.g. "480p".
    bound_th: boundary tolerance (see `metrics.db_eval_boundary`).
    exclude_void: leave void pixels out instead of scoring them as
      background (see `metrics.evaluate_video`).

  Returns:
    The `metrics.summarize` dict: {"global": {...}, "per_object": {...}}.

  Raises:
    DataError: a missing sequence folder or result PNG, a result of the
      wrong size or with unknown ids, bad ground truth, or a folder that
      mixes evaluations (`check_one_evaluation`).
  """
  results_dir = pathlib.Path(results_dir)
  dataset = davis_data.DavisDataset(data_root, year=year, split=split,
                                    resolution=resolution)
  _check_sequences(results_dir, dataset.sequences, split)
  check_one_evaluation(results_dir, dataset.sequences)
  evaluator = metrics.DavisEvaluator(bound_th=bound_th,
                                     exclude_void=exclude_void)
  # Sequential on purpose: decoding the next sequence in threads while this
  # one is scored was slower on the 2-core box (GIL contention), and the
  # scoring itself is a small share of the time (see BENCHMARKS.md).
  for name in dataset.sequences:
    video = _ground_truth(dataset, name)
    pred = read_results(results_dir / name, video, year)
    evaluator.add_video(name, video.masks, pred, video.object_ids)
  return evaluator.result()


def _csv(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = [",".join(header)]
  for row in rows:
    lines.append(",".join(v if isinstance(v, str) else f"{v:.3f}" for v in row))
  return "\n".join(lines) + "\n"


def write_reports(summary: dict, json_path: PathLike, csv_dir: PathLike,
                  split: str) -> list[pathlib.Path]:
  """Writes the summary JSON and the two official CSVs, atomically.

  Args:
    summary: `evaluate_results_dir` output.
    json_path: where the JSON goes.
    csv_dir: folder of `global_results-<split>.csv` and
      `per-sequence_results-<split>.csv` (official names and columns, 3
      decimals).
    split: split name used in the CSV names.

  Returns:
    The paths written.
  """
  json_path, csv_dir = pathlib.Path(json_path), pathlib.Path(csv_dir)
  global_csv = csv_dir / f"global_results-{split}.csv"
  sequence_csv = csv_dir / f"per-sequence_results-{split}.csv"
  files.atomic_write_text(global_csv, _csv(
      metrics.GLOBAL_KEYS,
      [[summary["global"][k] for k in metrics.GLOBAL_KEYS]]))
  files.atomic_write_text(sequence_csv, _csv(
      ["Sequence", "J-Mean", "F-Mean"],
      [[name, s["J-Mean"], s["F-Mean"]]
       for name, s in summary["per_object"].items()]))
  files.atomic_write_text(json_path, json.dumps(summary, indent=2) + "\n")
  return [global_csv, sequence_csv, json_path]


def format_table(summary: dict, split: str) -> str:
  """The per-object and global scores as printable text."""
  names = list(summary["per_object"])
  width = max([len(n) for n in names] + [len("Sequence")])
  lines = [f"Per-sequence results for {split}:",
           f"{'Sequence':<{width}}  J-Mean  F-Mean"]
  for name in names:
    s = summary["per_object"][name]
    lines.append(f"{name:<{width}}  {s['J-Mean']:6.3f}  {s['F-Mean']:6.3f}")
  lines.append(f"Global results for {split}:")
  lines.append("  ".join(f"{k:>8}" for k in metrics.GLOBAL_KEYS))
  lines.append("  ".join(f"{summary['global'][k]:8.3f}"
                         for k in metrics.GLOBAL_KEYS))
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  flag = flags.FLAGS
  try:
    summary = evaluate_results_dir(
        flag.results_dir, flag.data_root, int(flag.year), flag.split,
        flag.resolution, exclude_void=flag.exclude_void)
  except DataError as e:  # Bad input: the message says what to fix.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  results_dir = pathlib.Path(flag.results_dir)
  json_path = pathlib.Path(flag.output or results_dir / "metrics.json")
  csv_dir = json_path.parent if flag.output else results_dir
  print(format_table(summary, flag.split))
  for path in write_reports(summary, json_path, csv_dir, flag.split):
    print(f"wrote {path}")


def _define_flags() -> None:
  # Defined only when run as a program: importing evaluate_results_dir from
  # training code must not add (or require) these flags in other programs.
  flags.DEFINE_string("results_dir", None,
                      "Folder with one sub-folder of result PNGs per sequence.")
  flags.DEFINE_string("data_root", None,
                      "DAVIS root: JPEGImages/, Annotations/, ImageSets/.")
  flags.DEFINE_enum("year", "2017", ["2016", "2017"],
                    "2016: every nonzero pixel is the one object.")
  flags.DEFINE_string("split", "val", "Split file stem, e.g. val.")
  flags.DEFINE_string("resolution", "480p", "Resolution folder, e.g. 480p.")
  flags.DEFINE_string("output", None, "Metrics JSON path; the CSVs go next to "
                      "it. Default: <results_dir>/metrics.json.")
  flags.DEFINE_bool("exclude_void", False, "Leave void (255) ground-truth "
                    "pixels out of both masks instead of scoring them as "
                    "background (the official semi-supervised rule).")
  flags.mark_flags_as_required(["results_dir", "data_root"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
