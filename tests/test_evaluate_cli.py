"""End-to-end tests of `metavos.evaluate` on synthetic and real DAVIS data."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from metavos import evaluate
from metavos.data import davis as davis_data
from metavos.data import io
from configs import common
from metavos.data.errors import DataError
from metavos.metrics import davis as metrics

_REPO = pathlib.Path(__file__).resolve().parents[1]
_DAVIS2016 = pathlib.Path(common.DAVIS16_240P)  # ../shared beside the checkout


def _copy_ground_truth(root: pathlib.Path, split: str, out: pathlib.Path,
                       resolution: str = "480p") -> pathlib.Path:
  """Results folder holding the ground-truth PNGs of a split: a perfect run."""
  for name in davis_data.DavisDataset(root, split=split,
                                      resolution=resolution).sequences:
    shutil.copytree(root / "Annotations" / resolution / name, out / name)
  return out


def _scored_object_frame(root, name):
  """(frame, id) of an object visible in a scored frame of `name`."""
  masks = np.stack([io.read_mask(p) for p in sorted(
      (root / "Annotations" / "480p" / name).glob("*.png"))])
  for t in range(1, masks.shape[0] - 1):
    for obj in (1, 2):
      if (masks[t] == obj).any():
        return t, obj
  raise AssertionError("no visible object")


def test_perfect_predictions_score_one(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "train", tmp_path / "res")
  summary = evaluate.evaluate_results_dir(results, synthetic_root, 2017,
                                          "train", "480p")
  assert summary["global"] == {
      "J&F-Mean": 1.0, "J-Mean": 1.0, "J-Recall": 1.0, "J-Decay": 0.0,
      "F-Mean": 1.0, "F-Recall": 1.0, "F-Decay": 0.0}
  assert sorted(summary["per_object"]) == [
      "synthetic-000_1", "synthetic-000_2", "synthetic-001_1",
      "synthetic-001_2"]


def test_first_and_last_frames_are_not_needed(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "val", tmp_path / "res")
  for folder in results.iterdir():
    pngs = sorted(folder.glob("*.png"))
    pngs[0].unlink()
    pngs[-1].unlink()
  summary = evaluate.evaluate_results_dir(results, synthetic_root, 2017, "val")
  assert summary["global"]["J&F-Mean"] == 1.0


def test_a_lost_object_lowers_its_scores(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "train", tmp_path / "res")
  name = "synthetic-000"
  t, obj = _scored_object_frame(synthetic_root, name)
  path = results / name / f"{t:05d}.png"
  mask = io.read_mask(path)
  io.write_mask_png(path, np.where(mask == obj, 0, mask).astype(np.uint8))
  summary = evaluate.evaluate_results_dir(results, synthetic_root, 2017,
                                          "train")
  scores = summary["per_object"][f"{name}_{obj}"]
  # 4 scored frames (1..4), one of them J = F = 0.
  assert scores["J-Mean"] == pytest.approx(0.75)
  assert scores["F-Mean"] == pytest.approx(0.75)
  assert scores["J-Recall"] == pytest.approx(0.75)
  assert summary["global"]["J&F-Mean"] == pytest.approx(1 - 0.25 / 4)


def test_year_2016_merges_all_objects(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "train", tmp_path / "res")
  for path in results.glob("*/*.png"):  # Swap the ids of objects 1 and 2.
    mask = io.read_mask(path)
    io.write_mask_png(path, np.choose(mask, [0, 2, 1]).astype(np.uint8))
  by_id = evaluate.evaluate_results_dir(results, synthetic_root, 2017, "train")
  merged = evaluate.evaluate_results_dir(results, synthetic_root, 2016, "train")
  assert by_id["global"]["J-Mean"] < 0.5
  assert merged["global"]["J&F-Mean"] == 1.0
  assert sorted(merged["per_object"]) == ["synthetic-000_1", "synthetic-001_1"]


def test_matches_vos_benchmark_end_to_end(synthetic_root, tmp_path):
  benchmark = pytest.importorskip("vos_benchmark.benchmark")
  results = _copy_ground_truth(synthetic_root, "train", tmp_path / "res")
  rng = np.random.default_rng(0)
  for path in sorted(results.glob("*/*.png")):
    mask = np.roll(io.read_mask(path), tuple(rng.integers(-3, 4, 2)), (0, 1))
    io.write_mask_png(path, mask)
  ours = evaluate.evaluate_results_dir(results, synthetic_root, 2017, "train")
  # benchmark() maps this per-video evaluator over a process pool; called
  # directly, nothing forks the (possibly JAX-threaded) test process.
  video_evaluator = benchmark.VideoEvaluator(
      str(synthetic_root / "Annotations" / "480p"), str(results))
  for name in ("synthetic-000", "synthetic-001"):
    _, ious, fs = video_evaluator(name)
    assert sorted(ious) == [1, 2]
    for obj in ious:
      scores = ours["per_object"][f"{name}_{obj}"]
      assert scores["J-Mean"] * 100 == pytest.approx(ious[obj], abs=1e-6)
      assert scores["F-Mean"] * 100 == pytest.approx(fs[obj], abs=1e-6)


def test_missing_result_png_names_the_file(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "val", tmp_path / "res")
  missing = results / "synthetic-002" / "00002.png"
  missing.unlink()
  with pytest.raises(DataError, match="missing result") as error:
    evaluate.evaluate_results_dir(results, synthetic_root, 2017, "val")
  assert error.value.path == str(missing)


def test_result_of_the_wrong_size_is_an_error(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "val", tmp_path / "res")
  path = results / "synthetic-002" / "00003.png"
  io.write_mask_png(path, np.zeros((24, 32), np.uint8))
  with pytest.raises(DataError, match="24x32 but the ground truth is 48x64"):
    evaluate.evaluate_results_dir(results, synthetic_root, 2017, "val")


def test_unknown_object_id_is_an_error(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "val", tmp_path / "res")
  path = results / "synthetic-002" / "00001.png"
  io.write_mask_png(path, np.full((48, 64), 255, np.uint8))
  with pytest.raises(DataError, match="object id 255"):
    evaluate.evaluate_results_dir(results, synthetic_root, 2017, "val")


def test_missing_sequence_is_an_error(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "train", tmp_path / "res")
  shutil.rmtree(results / "synthetic-001")
  with pytest.raises(DataError, match="no results for 1 of the 2") as error:
    evaluate.evaluate_results_dir(results, synthetic_root, 2017, "train")
  assert error.value.path == str(results / "synthetic-001")


def _run_cli(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(_REPO))
  return subprocess.run([sys.executable, "-m", "metavos.evaluate", *args],
                        capture_output=True, text=True, env=env, check=False,
                        cwd=_REPO)


def test_cli_writes_json_and_official_csvs(synthetic_root, tmp_path):
  results = _copy_ground_truth(synthetic_root, "train", tmp_path / "res")
  output = tmp_path / "out" / "metrics.json"
  run = _run_cli(f"--results_dir={results}", f"--data_root={synthetic_root}",
                 "--year=2017", "--split=train", "--resolution=480p",
                 f"--output={output}")
  assert run.returncode == 0, run.stderr
  assert "synthetic-001_2" in run.stdout and "J&F-Mean" in run.stdout
  summary = json.loads(output.read_text())
  assert list(summary["global"]) == list(metrics.GLOBAL_KEYS)
  assert summary["global"]["J&F-Mean"] == 1.0
  global_csv = (output.parent / "global_results-train.csv").read_text()
  assert global_csv.splitlines() == [
      "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay",
      "1.000,1.000,1.000,0.000,1.000,1.000,0.000"]
  rows = (output.parent / "per-sequence_results-train.csv").read_text()
  assert rows.splitlines()[:2] == ["Sequence,J-Mean,F-Mean",
                                   "synthetic-000_1,1.000,1.000"]
  assert not list(output.parent.glob(".*.tmp"))  # Atomic writes, no leftovers.


def test_cli_reports_bad_input_and_fails(synthetic_root, tmp_path):
  results = tmp_path / "res"
  results.mkdir()
  run = _run_cli(f"--results_dir={results}", f"--data_root={synthetic_root}",
                 "--split=val")
  assert run.returncode == 1
  assert "synthetic-002" in run.stderr and "Fix:" in run.stderr
  assert not (results / "metrics.json").exists()


# ------------------------------------------------------------ real data ---

needs_davis2016 = pytest.mark.skipif(
    not (_DAVIS2016 / "ImageSets").is_dir(),
    reason=f"real DAVIS 2016 data not found at {_DAVIS2016}")


@needs_davis2016
def test_real_ground_truth_as_prediction_scores_one():
  dataset = davis_data.DavisDataset(_DAVIS2016, year=2016, split="dev",
                                    resolution="240p")
  evaluator = metrics.DavisEvaluator()
  for name in dataset.sequences[:2]:
    video = evaluate.load_ground_truth(dataset, name)
    assert video.object_ids == (1,) and video.size == (240, 427)
    evaluator.add_video(name, video.masks, video.masks, video.object_ids)
  assert evaluator.result()["global"]["J&F-Mean"] == 1.0
  assert len(evaluator.result()["per_object"]) == 2


@needs_davis2016
def test_real_shifted_prediction_matches_vos_benchmark():
  evaluator_lib = pytest.importorskip("vos_benchmark.evaluator")
  dataset = davis_data.DavisDataset(_DAVIS2016, year=2016, split="dev",
                                    resolution="240p")
  video = evaluate.load_ground_truth(dataset, dataset.sequences[0])
  gt = video.masks[:12]
  pred = np.roll(gt, (3, -7), axis=(1, 2))  # Beyond the 4-pixel radius.
  ours = metrics.evaluate_video(gt, pred, [1])[1]
  reference = evaluator_lib.Evaluator()
  for t in range(1, gt.shape[0] - 1):
    reference.feed_frame(pred[t], gt[t])
  np.testing.assert_allclose(ours["J"], reference.object_iou[1], atol=1e-6)
  np.testing.assert_allclose(ours["F"], reference.boundary_f[1], atol=1e-6)
  assert ours["J"].mean() < 0.9 and ours["F"].mean() < 0.9


@needs_davis2016
def test_real_results_dir_of_binary_pngs(tmp_path):
  # DAVIS 2016 ground truth is 0/255 grayscale; as results, 255 is the object.
  dataset = davis_data.DavisDataset(_DAVIS2016, year=2016, split="dev",
                                    resolution="240p")
  results = tmp_path / "res"
  for name in dataset.sequences:
    (results / name).mkdir(parents=True)
    pngs = sorted((_DAVIS2016 / "Annotations" / "240p" / name).glob("*.png"))
    for png in pngs[:8]:
      os.symlink(png, results / name / png.name)
  # Shorten the split to the first 8 frames of each sequence.
  root = tmp_path / "davis"
  for part in ("JPEGImages", "Annotations"):
    for name in dataset.sequences:
      folder = root / part / "240p" / name
      folder.mkdir(parents=True)
      suffix = "*.jpg" if part == "JPEGImages" else "*.png"
      for f in sorted((_DAVIS2016 / part / "240p" / name).glob(suffix))[:8]:
        os.symlink(f, folder / f.name)
  (root / "ImageSets" / "2016").mkdir(parents=True)
  shutil.copy(_DAVIS2016 / "ImageSets" / "2016" / "dev.txt",
              root / "ImageSets" / "2016" / "dev.txt")
  summary = evaluate.evaluate_results_dir(results, root, 2016, "dev", "240p")
  assert summary["global"]["J&F-Mean"] == 1.0
  assert len(summary["per_object"]) == 5
