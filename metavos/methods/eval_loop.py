"""The one evaluation loop: segment each video, write results, score them.

Writes `<workdir>/results/<sequence>/<frame>.png` (DAVIS palette PNGs),
`<workdir>/metrics.json` (the DAVIS JSON shape of `metavos.evaluate`) and
`<workdir>/timing.json` (per-video seconds and frames per second, counting
fine-tuning, so FPS is per video, not per object) and, with
`config.eval.pictures`, `<workdir>/report.html` with an overlay GIF and a
J-per-frame plot per video under `<workdir>/pictures/` (metavos.visualize).
Picture time is reported apart (`pictures_seconds`), so fps stays the
segmentation speed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from metavos.data import writers
from metavos.data.types import Video
from metavos.methods import setup
from metavos.metrics import davis as davis_metrics
from metavos.runtime import files, progress
from metavos.visualize import report as report_lib

# segment(video, rng) -> ((T, H, W) uint8 object ids, stats dict)
SegmentFn = Callable[[Video, jax.Array], tuple[np.ndarray, dict]]


def evaluate_split(config: ml_collections.ConfigDict, workdir: str,
                   segment: SegmentFn) -> dict:
  """Segments every video of `config.data.split` and scores the results.

  Only process 0 evaluates (videos are independent and results go to one
  directory); the other processes return an empty dict.
  """
  if jax.process_index() != 0:
    return {}
  ds = setup.open_split(config, setup.data_root(config, workdir),
                        config.data.split)
  names = list(ds.sequences)
  if config.data.max_eval_videos:
    names = names[:config.data.max_eval_videos]
  results_dir = os.path.join(workdir, "results")
  evaluator = davis_metrics.DavisEvaluator()
  pictures = _report_writer(config, workdir)
  timing = {}
  bar = progress.Progress(len(names), "evaluate")
  key = jax.random.key(config.seed + 1)
  for i, name in enumerate(names):
    video = ds.load(name)
    t0 = time.perf_counter()
    pred, stats = segment(video, jax.random.fold_in(key, i))
    stats = {"frames": video.num_frames, "objects": len(video.object_ids),
             **stats, "seconds_total": time.perf_counter() - t0}
    timing[name] = stats
    if not np.isfinite(stats.get("final_support_loss", 0.0)):
      logging.warning("%s: the fine-tuning loss is not finite: the rate "
                      "(config.finetune.lr) is too large for this loss.", name)
    writers.write_davis_results(results_dir, name, video.frame_names, pred)
    result = None
    if video.annotated.all():  # Sparse ground truth cannot be scored here.
      result = evaluator.add_video(name, video.masks, pred, video.object_ids)
    if pictures:
      stats["pictures_seconds"] = pictures.add_video(video, pred, result)
    bar.update(i + 1, extra=f"{name} {stats['fps']:.2f} fps")
  return _finish(config, workdir, evaluator, timing, pictures)


def _finish(config: ml_collections.ConfigDict, workdir: str,
            evaluator: davis_metrics.DavisEvaluator, timing: dict,
            pictures: report_lib.ReportWriter | None) -> dict:
  """Writes metrics.json, the report and timing.json; returns the metrics."""
  fps = [s["fps"] for s in timing.values()]
  summary = {"videos": timing, "median_fps": float(np.median(fps)),
             "note": "fps = frames / seconds per video, fine-tuning included; "
                     "the first video also pays for compilation. "
                     "pictures_seconds (GIFs, plots, report.html) is not "
                     "part of fps."}
  metrics = evaluator.result() if len(evaluator) else {}
  if metrics:
    files.atomic_write_text(os.path.join(workdir, "metrics.json"),
                            json.dumps(metrics, indent=2))
  if pictures:
    n = len(timing)
    pictures.write(metrics, summary, f"{config.method} on {config.data.split}"
                   f": {n} video{'' if n == 1 else 's'}")
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
  """The picture writer when `config.eval.pictures` is on (configs made
  before the `eval` block existed have none: no pictures)."""
  cfg = config.get("eval")
  if cfg is None or not cfg.pictures:
    return None
  return report_lib.ReportWriter(workdir, cfg)
