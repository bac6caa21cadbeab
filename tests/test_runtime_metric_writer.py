"""Metric writer, progress line and TensorBoard event files."""

import json
import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from metavos.runtime import metric_writer
from metavos.runtime import progress


def _steps(workdir) -> list[int]:
  return [r["step"] for r in metric_writer.read_metrics(
      workdir / metric_writer.METRICS_FILE)]


def test_config_and_scalars_read_back(tmp_path, capsys):
  config = ml_collections.ConfigDict({"lr": 0.1, "model": {"depth": 2},
                                      "sizes": (4, 8)})
  with metric_writer.MetricWriter(tmp_path, total_steps=10,
                                  items_per_step=8) as writer:
    writer.write_config(config)
    writer.write_scalars(2, {"loss": jnp.float32(0.5), "lr": np.float64(1e-3)})
    writer.write_scalars(4, {"loss": 0.25, "accuracy": jnp.array([0.9])})
  assert json.loads((tmp_path / "config.json").read_text()) == {
      "lr": 0.1, "model": {"depth": 2}, "sizes": [4, 8]}
  records = metric_writer.read_metrics(tmp_path / "metrics.jsonl")
  assert records == [{"step": 2, "loss": 0.5, "lr": 1e-3},
                     {"step": 4, "loss": 0.25, "accuracy": pytest.approx(0.9)}]
  lines = capsys.readouterr().err.splitlines()
  assert lines[-1].startswith("train 4/10 (40.0%) | ")
  assert "steps/s" in lines[-1] and "items/s" in lines[-1]
  assert "ETA" in lines[-1] and "loss=0.25" in lines[-1]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_guard_names_metric_and_step(tmp_path, bad):
  writer = metric_writer.MetricWriter(tmp_path, tensorboard=False)
  writer.write_scalars(1, {"loss": 1.0})
  with pytest.raises(FloatingPointError, match=r"inner_loss is .* at step 7"):
    writer.write_scalars(7, {"inner_loss": jnp.float32(bad), "lr": 0.1})
  writer.write_scalars(8, {"grad_norm": math.nan})  # Not guarded.
  writer.close()
  assert _steps(tmp_path) == [1, 8]


def test_non_scalar_metric_is_rejected(tmp_path):
  with metric_writer.MetricWriter(tmp_path, tensorboard=False) as writer:
    with pytest.raises(ValueError, match=r"'loss' at step 3 has shape \(2,\)"):
      writer.write_scalars(3, {"loss": np.ones(2)})


def test_resume_drops_lines_a_resumed_run_rewrites(tmp_path):
  with metric_writer.MetricWriter(tmp_path, tensorboard=False) as writer:
    for step in range(1, 7):
      writer.write_scalars(step, {"loss": 1.0 / step})
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 7, "lo')  # A crash mid-line.

  # Resumed from a checkpoint at step 4: steps 5 and later are recomputed.
  with metric_writer.MetricWriter(tmp_path, tensorboard=False,
                                  start_step=4) as writer:
    writer.write_scalars(6, {"loss": 0.0})
  assert _steps(tmp_path) == [1, 2, 3, 4, 6]

  # Without start_step, the first step written is where the new run starts.
  with metric_writer.MetricWriter(tmp_path, tensorboard=False) as writer:
    writer.write_scalars(3, {"loss": 0.0})
  assert _steps(tmp_path) == [1, 2, 3]


def test_progress_rate_eta_and_rate_limit():
  now = [100.0]
  lines = []
  reporter = progress.Progress(total=100, name="eval", unit="videos",
                               item_unit="frames", every_seconds=10.0,
                               printer=lines.append, clock=lambda: now[0])
  now[0] = 105.0
  assert reporter.update(5, items=50) is None  # Too early to report.
  now[0] = 110.0
  line = reporter.update(10, items=50)
  assert line == "eval 10/100 (10.0%) | 1 videos/s | 10 frames/s | ETA 0:01:30"
  now[0] = 115.0
  assert reporter.update(20, force=True).endswith("2 videos/s | 10 frames/s "
                                                   "| ETA 0:00:40")
  assert lines == [line, lines[1]] and len(lines) == 2
  assert progress.format_duration(math.nan) == "?"


def test_event_file_reads_back_with_tensorboard(tmp_path):
  accumulator = pytest.importorskip(
      "tensorboard.backend.event_processing.event_accumulator")
  with metric_writer.MetricWriter(tmp_path) as writer:
    writer.write_scalars(3, {"loss": 0.5, "eval/J&F": 0.75})
    writer.write_scalars(2**40, {"loss": -1.0, "eval/J&F": 0.25})
  events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  assert sorted(events.Tags()["scalars"]) == ["eval/J_F", "loss"]
  assert [(e.step, e.value) for e in events.Scalars("loss")] == [
      (3, 0.5), (2**40, -1.0)]
  assert [(e.step, e.value) for e in events.Scalars("eval/J_F")] == [
      (3, 0.75), (2**40, 0.25)]


def test_resumed_run_replaces_tensorboard_steps(tmp_path):
  accumulator = pytest.importorskip(
      "tensorboard.backend.event_processing.event_accumulator")
  with metric_writer.MetricWriter(tmp_path) as writer:
    for step in (1, 2, 3):
      writer.write_scalars(step, {"loss": float(step)})
  with metric_writer.MetricWriter(tmp_path, start_step=1) as writer:
    writer.write_scalars(2, {"loss": 20.0})
  events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars("loss")] == [
      (1, 1.0), (2, 20.0)]
