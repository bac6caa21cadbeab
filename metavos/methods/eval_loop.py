"""The one evaluation loop: segment each video, write results, score them.

Writes `<workdir>/results/<sequence>/<frame>.png` (DAVIS palette PNGs),
`<workdir>/metrics.json` (the DAVIS JSON shape of `metavos.evaluate`),
on YouTube-VOS `<workdir>/submission/submission.zip` (the official server's
format), `<workdir>/timing.json` (per-video seconds and frames per second,
counting fine-tuning, so FPS is per video, not per object) and, with
`config.eval.pictures`, `<workdir>/report.html` with an overlay GIF and a
J-per-frame plot per video under `<workdir>/pictures/` (metavos.visualize).
Picture time is reported apart (`pictures_seconds`), so fps stays the
segmentation speed.

Provenance: `metrics.json` and `results/provenance.json` record the
checkpoint (path and step) and the config the results came from. A new
evaluation first renames an earlier `metrics.json` / `report.html` to
`*.stale.*`, writes its masks to `results.partial/` and swaps that folder in
only when every video is done, so a kill at any point never leaves a
`results/` that mixes two evaluations, nor a metrics file beside results it
does not describe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Callable, Protocol, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from metavos import evaluate as evaluate_lib
from metavos.data import writers
from metavos.data.types import Video
from metavos.finetune import suggest
from metavos.methods import registry, setup
from metavos.metrics import davis as davis_metrics
from metavos.runtime import checkpoint, distributed, files, progress
from metavos.visualize import report as report_lib

# segment(video, rng) -> ((T, H, W) uint8 object ids, stats dict)
SegmentFn = Callable[[Video, jax.Array], tuple[np.ndarray, dict]]


class Segmenter(Protocol):
  """What every method's `load_segmenter` returns."""

  def segment(self, video: Video, rng: jax.Array,
              annotated_frames: Sequence[int] | None = None
              ) -> tuple[np.ndarray, dict]:
    ...


def annotated_frames(config: ml_collections.ConfigDict,
                     video: Video) -> list[int] | None:
  """The frames whose masks a segmenter is given: `finetune.annotated_frames`,
  else `finetune.num_annotated` evenly spaced ones (1, 2, 4, ...), else None
  (each object's first annotated frame: the one-shot protocol)."""
  f = config.finetune
  if f.annotated_frames:
    bad = [t for t in f.annotated_frames
           if not 0 <= t < video.num_frames or not video.annotated[t]]
    if bad:
      raise ValueError(f"{video.name}: finetune.annotated_frames {bad} are "
                       "not annotated frames of this video.")
    return list(f.annotated_frames)
  if f.num_annotated <= 1:
    return None
  return suggest.evenly_spaced(video.num_frames, f.num_annotated,
                               min(video.first_frame.values()))


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             segmenter: Segmenter) -> dict:
  """Every method's evaluation: `segmenter` is given each video's annotated
  frames (`annotated_frames`), which timing.json records per video."""

  def segment(video: Video, rng: jax.Array):
    given = annotated_frames(config, video)
    pred, stats = segmenter.segment(video, rng, given)
    used = given if given is not None else sorted(
        set(video.first_frame.values()))
    return pred, {"annotated_frames": [int(t) for t in used], **stats}

  return evaluate_split(config, workdir, segment)


def evaluate_split(config: ml_collections.ConfigDict, workdir: str,
                   segment: SegmentFn) -> dict:
  """Segments every video of `config.data.split` and scores the results.

  With several JAX processes the videos are shared out (process p takes
  every P-th, `process_share`); each writes its masks and pictures into the
  workdir (shared by all processes, as for checkpoints), their scores,
  timings and digests are gathered, and process 0 scores the whole split
  once: it writes metrics.json, timing.json, provenance and the report and
  returns the metrics; the other processes return an empty dict.
  """
  process, count = jax.process_index(), jax.process_count()
  ds = setup.open_split(config, setup.data_root(config, workdir),
                        config.data.split, whole_split=True)
  names = list(ds.sequences)
  if config.data.max_eval_videos:
    names = names[:config.data.max_eval_videos]
  provenance = _provenance(config, workdir)
  results_dir = os.path.join(workdir, RESULTS + ".partial")
  if process == 0:
    _mark_stale(workdir)
    shutil.rmtree(results_dir, ignore_errors=True)  # a killed evaluation's
  distributed.barrier("evaluate: results folder reset")
  pictures = _report_writer(config, workdir)
  mine = process_share(len(names), process, count)
  records = {}
  bar = progress.Progress(len(mine), "evaluate")
  key = jax.random.key(config.seed + 1)
  for done, i in enumerate(mine):
    name = names[i]
    video = ds.load(name)
    t0 = time.perf_counter()
    # Keyed by the video's index in the split: the same on any process count.
    pred, stats = segment(video, jax.random.fold_in(key, i))
    stats = {"frames": video.num_frames, "objects": len(video.object_ids),
             **stats, "seconds_total": time.perf_counter() - t0}
    if count > 1:
      stats["process"] = process
    if not np.isfinite(stats.get("final_support_loss", 0.0)):
      logging.warning("%s: the fine-tuning loss is not finite: the rate "
                      "(config.finetune.lr) is too large for this loss.", name)
    record = {"timing": stats, "digest": writers.sequence_digest(
        writers.write_davis_results(results_dir, name, video.frame_names,
                                    pred))}
    result = None
    if video.annotated.all():  # Sparse ground truth cannot be scored here.
      result = davis_metrics.evaluate_video(video.masks, pred,
                                            video.object_ids)
      record["result"] = {str(o): {m: v.tolist() for m, v in r.items()}
                          for o, r in result.items()}
    if pictures:
      stats["pictures_seconds"] = pictures.add_video(video, pred, result)
      record["pictures"] = dataclasses.asdict(pictures.videos[-1])
    records[name] = json.loads(json.dumps(record, default=float))
    bar.update(done + 1, extra=f"{name} {stats['fps']:.2f} fps")
  gathered = {}
  for part in distributed.gather_json(records):
    gathered.update(part)
  if process != 0:
    return {}
  evaluator = davis_metrics.DavisEvaluator()
  timing, digests = {}, {}
  if pictures:
    pictures.videos = []
  for name in names:  # split order, whichever process segmented it
    record = gathered[name]
    timing[name], digests[name] = record["timing"], record["digest"]
    if "result" in record:
      evaluator.add_result(name, {int(o): {m: np.asarray(v, np.float64)
                                           for m, v in r.items()}
                                  for o, r in record["result"].items()})
    if pictures:
      pictures.videos.append(report_lib.VideoPictures(**record["pictures"]))
  files.atomic_write_text(os.path.join(results_dir, PROVENANCE),
                          json.dumps({**provenance, "sequences": names,
                                      "digests": digests}, indent=2))
  _swap_in(results_dir, os.path.join(workdir, RESULTS))
  _write_submission(config, workdir, ds, names)
  return _finish(config, workdir, evaluator, timing, pictures, provenance)


def process_share(num_videos: int, process: int, count: int) -> range:
  """Indices of the videos process `process` of `count` evaluates: every
  count-th, so long and short videos spread over the processes."""
  return range(process, num_videos, count)


RESULTS = "results"
PROVENANCE = evaluate_lib.PROVENANCE
# Outputs of an evaluation that a newer one supersedes.
_STALE = ("metrics.json", "report.html")


SUBMISSION = "submission"


def _write_submission(config: ml_collections.ConfigDict, workdir: str, ds,
                      names: list[str]) -> None:
  """YouTube-VOS: `<workdir>/submission/` with `Annotations/<video>/
  <frame>.png` (original sizes, DAVIS palette, objects from the frame they
  enter) and `submission.zip` of the same tree, the file the official server
  takes; made from the results just written, for the frames meta.json
  requests. Only when every video of the split was segmented."""
  meta = getattr(ds, "meta", None)
  if config.data.kind != "youtube_vos" or meta is None:
    return
  if names != list(ds.sequences):
    logging.warning("YouTube-VOS submission not written: %d of the %d "
                    "videos of split %s were segmented "
                    "(data.max_eval_videos).", len(names),
                    len(ds.sequences), config.data.split)
    return
  path = writers.write_youtube_vos_submission(
      os.path.join(workdir, SUBMISSION),
      writers.ResultsFolder(os.path.join(workdir, RESULTS)), meta)
  logging.info("YouTube-VOS submission for the server: %s", path)


def _provenance(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Which parameters and config the results come from."""
  record = {"method": config.method, "mode": config.mode,
            "split": config.data.split, "data_root": config.data.root,
            "config": config.to_dict()}
  try:
    root, step = checkpoint.locate(
        registry.trained_checkpoint(config, workdir))
    record.update(checkpoint=str(root), checkpoint_step=step)
  except (ValueError, checkpoint.CheckpointError):  # e.g. nothing trained
    record.update(checkpoint=None, checkpoint_step=None)
  return json.loads(json.dumps(record, default=str))


def _mark_stale(workdir: str) -> None:
  for name in _STALE:
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      stem, ext = os.path.splitext(name)
      os.replace(path, os.path.join(workdir, f"{stem}.stale{ext}"))


def _swap_in(new_dir: str, final_dir: str) -> None:
  """Replaces `final_dir` by the finished `new_dir` (two renames)."""
  old = final_dir + ".old"
  shutil.rmtree(old, ignore_errors=True)
  if os.path.exists(final_dir):
    os.replace(final_dir, old)
  os.replace(new_dir, final_dir)
  shutil.rmtree(old, ignore_errors=True)


def _finish(config: ml_collections.ConfigDict, workdir: str,
            evaluator: davis_metrics.DavisEvaluator, timing: dict,
            pictures: report_lib.ReportWriter | None,
            provenance: dict) -> dict:
  """Writes metrics.json, the report and timing.json; returns the metrics."""
  fps = [s["fps"] for s in timing.values()]
  summary = {"videos": timing, "median_fps": float(np.median(fps)),
             "note": "fps = frames / seconds per video, fine-tuning included; "
                     "the first video also pays for compilation. "
                     "pictures_seconds (GIFs, plots, report.html) is not "
                     "part of fps."}
  metrics = evaluator.result() if len(evaluator) else {}
  if metrics:
    record = {k: v for k, v in provenance.items() if k != "config"}
    metrics = {**metrics, "provenance": record}  # returned as written
    files.atomic_write_text(os.path.join(workdir, "metrics.json"),
                            json.dumps(metrics, indent=2))
  if pictures:
    n = len(timing)
    step = provenance.get("checkpoint_step")
    pictures.write(metrics, summary, f"{config.method} on {config.data.split}"
                   f": {n} video{'' if n == 1 else 's'}"
                   + (f", checkpoint step {step}" if step is not None else ""))
    summary["pictures_seconds"] = pictures.seconds
  files.atomic_write_text(os.path.join(workdir, "timing.json"),
                          json.dumps(summary, indent=2))
  if not metrics:
    logging.warning("No fully annotated video in split %s: wrote results "
                    "only (score them with the benchmark's server).",
                    config.data.split)
    return {}
  g = metrics["global"]
  logging.info("%s: J&F %.4f  J %.4f  F %.4f  (%d videos, median %.2f fps)",
               config.data.split, g["J&F-Mean"], g["J-Mean"], g["F-Mean"],
               len(evaluator), summary["median_fps"])
  return metrics


def _report_writer(config: ml_collections.ConfigDict,
                   workdir: str) -> report_lib.ReportWriter | None:
  """The picture writer when `config.eval.pictures` is on."""
  if not config.eval.pictures:
    return None
  return report_lib.ReportWriter(workdir, config.eval)
