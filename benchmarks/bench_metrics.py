r"""Speed of metavos' DAVIS J/F evaluation against the official code path.

Generates a DAVIS-sized result set (by default 20 sequences x 70 frames of
854x480 = 1400 frames, 2 objects per frame, predictions = jittered, rescaled,
sometimes lost or spurious ground-truth objects), writes it as palette PNGs in
the DAVIS layout, and times three implementations on the same masks:

  metavos         metavos.metrics.davis (bit-packed numpy).
  official        a faithful re-implementation of the davis2017-evaluation
                  per-frame path, written for this script: per object and
                  frame, seg2bmap with full-size numpy shifts, skimage
                  disk(), cv2.dilate, db_eval_iou, then db_statistics.
  vos-benchmark   the PyPI package (its Evaluator.feed_frame copies the
                  official per-frame code; its benchmark() runs a process
                  pool over videos).

Two timings: "metrics" scores masks already in memory; "end to end" starts
from the PNG folders (decoding included; metavos via
metavos.evaluate.evaluate_results_dir, official by reading the PNGs with PIL,
vos-benchmark via benchmark() with 1 process and with one per core). All
three must agree on J-Mean and F-Mean (checked to 1e-9).

  python -m benchmarks.bench_metrics      # from the repository root
  python -m benchmarks.bench_metrics --sequences=4 --frames=30   # quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import tempfile
import time

import cv2
import numpy as np
from PIL import Image
from skimage.morphology import disk
from vos_benchmark import benchmark
from vos_benchmark import evaluator as vos_evaluator

from metavos import evaluate
from metavos.data import io
from metavos.metrics import davis

# --------------------------------------------------------------------------
# The data set.
# --------------------------------------------------------------------------


def _star(rng: np.random.Generator, radius: float, scale: float) -> np.ndarray:
  """A star-shaped blob (3 harmonics) of about `radius * scale` pixels."""
  size = int(math.ceil(radius * 1.8)) * 2 + 1
  yy, xx = np.mgrid[:size, :size] - size // 2
  theta = np.arctan2(yy, xx)
  edge = np.ones_like(theta)
  for k in (2, 3, 5):
    edge += rng.uniform(0.03, 0.12) * np.cos(k * theta + rng.uniform(0, 6.3))
  return np.hypot(yy, xx) < radius * scale * edge


def _paste(canvas: np.ndarray, shape: np.ndarray, cy: int, cx: int,
           value: int) -> None:
  """Paints `shape` centred at (cy, cx), clipped to the canvas."""
  h, w = canvas.shape
  s = shape.shape[0]
  y0, x0 = cy - s // 2, cx - s // 2
  ys, xs = slice(max(y0, 0), min(y0 + s, h)), slice(max(x0, 0), min(x0 + s, w))
  if ys.start >= ys.stop or xs.start >= xs.stop:
    return
  part = shape[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
  canvas[ys, xs][part] = value


def make_sequence(rng: np.random.Generator, frames: int, h: int, w: int,
                  objects: int) -> tuple[np.ndarray, np.ndarray]:
  """(gt, pred) (T, H, W) uint8 id maps of moving, occluding objects."""
  gt = np.zeros((frames, h, w), np.uint8)
  pred = np.zeros((frames, h, w), np.uint8)
  for obj in range(1, objects + 1):
    radius = rng.uniform(0.12, 0.25) * h
    truth = _star(rng, radius, 1.0)
    guess = _star(rng, radius, rng.uniform(0.96, 1.04))
    start = rng.uniform([0.25 * h, 0.2 * w], [0.75 * h, 0.8 * w])
    velocity = rng.normal(0, 1.5, 2)
    for t in range(frames):
      cy, cx = (start + velocity * t).astype(int)
      _paste(gt[t], truth, cy, cx, obj)
      if rng.random() < 0.04:  # Lost in this frame.
        continue
      dy, dx = rng.integers(-3, 4, 2)
      _paste(pred[t], guess, cy + dy, cx + dx, obj)
      if rng.random() < 0.1:  # A spurious blob elsewhere.
        _paste(pred[t], guess[::3, ::3], int(rng.integers(h)),
               int(rng.integers(w)), obj)
  return gt, pred


def write_dataset(root: pathlib.Path, sequences: dict) -> pathlib.Path:
  """DAVIS layout under root/davis, results under root/results."""
  h, w = next(iter(sequences.values()))[0].shape[1:]
  frame = root / "frame.jpg"  # One real JPEG, linked as every frame.
  Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(frame)
  data = root / "davis"
  for name, (gt, pred) in sequences.items():
    (data / "JPEGImages" / "480p" / name).mkdir(parents=True)
    for t in range(gt.shape[0]):
      os.link(frame, data / "JPEGImages" / "480p" / name / f"{t:05d}.jpg")
      io.write_mask_png(data / "Annotations" / "480p" / name / f"{t:05d}.png",
                        gt[t])
      io.write_mask_png(root / "results" / name / f"{t:05d}.png", pred[t])
  (data / "ImageSets" / "2017").mkdir(parents=True)
  (data / "ImageSets" / "2017" / "val.txt").write_text(
      "".join(f"{n}\n" for n in sequences))
  return data


# --------------------------------------------------------------------------
# The official per-frame path, re-implemented for timing.
# --------------------------------------------------------------------------


def _official_bmap(seg: np.ndarray) -> np.ndarray:
  seg = seg.astype(bool)
  right, below, diag = (np.zeros_like(seg) for _ in range(3))
  right[:, :-1] = seg[:, 1:]
  below[:-1, :] = seg[1:, :]
  diag[:-1, :-1] = seg[1:, 1:]
  bmap = (seg ^ right) | (seg ^ below) | (seg ^ diag)
  bmap[-1, :] = seg[-1, :] ^ right[-1, :]
  bmap[:, -1] = seg[:, -1] ^ below[:, -1]
  bmap[-1, -1] = False
  return bmap


def _official_f(pred: np.ndarray, gt: np.ndarray, bound_th=0.008) -> float:
  radius = np.ceil(bound_th * np.linalg.norm(pred.shape))
  pred_b, gt_b = _official_bmap(pred), _official_bmap(gt)
  pred_dil = cv2.dilate(pred_b.astype(np.uint8), disk(radius).astype(np.uint8))
  gt_dil = cv2.dilate(gt_b.astype(np.uint8), disk(radius).astype(np.uint8))
  pred_match, gt_match = pred_b * gt_dil, gt_b * pred_dil
  n_fg, n_gt = np.sum(pred_b), np.sum(gt_b)
  if n_fg == 0 and n_gt == 0:
    return 1.0
  if n_fg == 0 or n_gt == 0:  # P, R = (1, 0) or (0, 1).
    return 0.0
  precision = np.sum(pred_match) / float(n_fg)
  recall = np.sum(gt_match) / float(n_gt)
  total = precision + recall
  return 0.0 if total == 0 else 2 * precision * recall / total


def _official_j(pred: np.ndarray, gt: np.ndarray) -> float:
  inter, union = np.sum(pred & gt), np.sum(pred | gt)
  return 1.0 if union == 0 else inter / union


def official_video(gt: np.ndarray, pred: np.ndarray, ids) -> dict:
  out = {}
  for obj in ids:
    g, p = gt[1:-1] == obj, pred[1:-1] == obj
    out[obj] = {"J": np.array([_official_j(p[t], g[t]) for t in range(len(g))]),
                "F": np.array([_official_f(p[t], g[t]) for t in range(len(g))])}
  return out


def vos_benchmark_video(gt: np.ndarray, pred: np.ndarray) -> dict:
  evaluator = vos_evaluator.Evaluator()
  for t in range(1, gt.shape[0] - 1):
    evaluator.feed_frame(pred[t], gt[t])
  return {k: {"J": np.array(evaluator.object_iou[k]),
              "F": np.array(evaluator.boundary_f[k])}
          for k in evaluator.objects_in_gt}


def _read_png(path: pathlib.Path) -> np.ndarray:
  return np.array(Image.open(path))


def official_end_to_end(data: pathlib.Path, results: pathlib.Path,
                        names) -> dict:
  out = {}
  for name in names:
    pngs = sorted((data / "Annotations" / "480p" / name).glob("*.png"))
    gt = np.stack([_read_png(p) for p in pngs])
    pred = np.zeros_like(gt)
    for t in range(1, len(pngs) - 1):
      pred[t] = _read_png(results / name / pngs[t].name)
    ids = [int(i) for i in np.unique(gt[0]) if i not in (0, 255)]
    out[name] = official_video(gt, pred, ids)
  return out


# --------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------


def _timed(fn, repeats: int):
  best, value = math.inf, None
  for _ in range(repeats):
    t0 = time.perf_counter()
    value = fn()
    best = min(best, time.perf_counter() - t0)
  return best, value


def _means(per_sequence: dict) -> tuple[float, float]:
  g = davis.summarize(per_sequence)["global"]
  return g["J-Mean"], g["F-Mean"]


def machine_line() -> str:
  cpu = platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return (f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores "
          f"({cpu}), numpy {np.__version__}, opencv {cv2.__version__} "
          f"({cv2.getNumThreads()} threads)")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sequences", type=int, default=20)
  parser.add_argument("--frames", type=int, default=70)
  parser.add_argument("--height", type=int, default=480)
  parser.add_argument("--width", type=int, default=854)
  parser.add_argument("--objects", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=1,
                      help="best of this many runs per timing")
  parser.add_argument("--skip_end_to_end", action="store_true")
  args = parser.parse_args()

  rng = np.random.default_rng(0)
  sequences = {f"seq-{i:02d}": make_sequence(rng, args.frames, args.height,
                                             args.width, args.objects)
               for i in range(args.sequences)}
  ids = list(range(1, args.objects + 1))
  frames = args.sequences * args.frames
  print(f"{machine_line()}\n{args.sequences} sequences x {args.frames} frames "
        f"= {frames} frames of {args.width}x{args.height}, {args.objects} "
        "objects\n")
  rows = {}

  def metavos_metrics():
    return {n: davis.evaluate_video(g, p, ids)
            for n, (g, p) in sequences.items()}

  def official_metrics():
    return {n: official_video(g, p, ids) for n, (g, p) in sequences.items()}

  def vos_metrics():
    return {n: vos_benchmark_video(g, p) for n, (g, p) in sequences.items()}

  def one_cv2_thread(fn):
    def run():
      threads = cv2.getNumThreads()
      cv2.setNumThreads(1)
      try:
        return fn()
      finally:
        cv2.setNumThreads(threads)
    return run

  cv2_threads = cv2.getNumThreads()
  for label, fn in [
      ("metavos", metavos_metrics),
      (f"official, cv2 {cv2_threads} threads", official_metrics),
      ("official, cv2 1 thread", one_cv2_thread(official_metrics)),
      ("vos-benchmark", vos_metrics)]:
    seconds, result = _timed(fn, args.repeats)
    rows[("metrics", label)] = (seconds, _means(result))
    print(f"metrics     {label:<30} {seconds:7.2f} s  J/F {_means(result)}")

  if not args.skip_end_to_end:
    with tempfile.TemporaryDirectory() as tmp:
      root = pathlib.Path(tmp)
      data = write_dataset(root, sequences)
      results = root / "results"
      names = list(sequences)

      def metavos_e2e():
        g = evaluate.evaluate_results_dir(results, data, 2017, "val", "480p")
        return g["global"]["J-Mean"], g["global"]["F-Mean"]

      def official_e2e():
        return _means(official_end_to_end(data, results, names))

      def ground_truth_only():  # metavos' share spent in the DAVIS loader.
        dataset = evaluate.davis_data.DavisDataset(data, 2017, "val", "480p")
        for name in names:
          evaluate.load_ground_truth(dataset, name)

      def png_decoding_only():  # The floor: every PNG any of them reads.
        for name in names:
          pngs = sorted((data / "Annotations" / "480p" / name).glob("*.png"))
          for png in pngs:
            _read_png(png)
          for png in pngs[1:-1]:
            _read_png(results / name / png.name)

      def vos_e2e(processes):
        def run():
          _, j, f, _ = benchmark.benchmark(
              [str(data / "Annotations" / "480p")], [str(results)],
              num_processes=processes, verbose=False)
          return j[0] / 100, f[0] / 100
        return run

      cores = os.cpu_count() or 1
      for label, fn in [
          ("metavos", metavos_e2e),
          ("  of which ground-truth loading", ground_truth_only),
          ("PNG decoding alone (PIL)", png_decoding_only),
          ("official", official_e2e),
          ("vos-benchmark 1 proc", vos_e2e(1)),
          (f"vos-benchmark {cores} procs", vos_e2e(cores))]:
        seconds, means = _timed(fn, args.repeats)
        rows[("end to end", label)] = (seconds, means)
        print(f"end to end  {label:<30} {seconds:7.2f} s  J/F {means}")

  reference = rows[("metrics", "metavos")][1]
  for key, (_, means) in rows.items():
    if means is not None:
      assert np.allclose(means, reference, rtol=0, atol=1e-9), (key, means)
  print("\nall implementations agree on J-Mean and F-Mean")
  print("\n| timing | implementation | seconds | frames/s | vs metavos |")
  print("|---|---|---:|---:|---:|")
  for (kind, label), (seconds, _) in rows.items():
    ours = rows[(kind, "metavos")][0]
    print(f"| {kind} | {label} | {seconds:.2f} | {frames / seconds:.0f} | "
          f"{seconds / ours:.1f}x |")
  print(json.dumps({f"{kind} / {label}": round(seconds, 3)
                    for (kind, label), (seconds, _) in rows.items()}))


if __name__ == "__main__":
  main()
