"""Resumable training, for real: `kill -9` a running `metavos.main`, rerun it.

The killed process gets no chance to clean up (no `finally`, no Orbax
wait): whatever it had in flight is lost. The same command again must resume
from the last finished checkpoint and end with the parameters and metric
lines of an uninterrupted run (the shared smoke run, same config).

The killed and the resumed process read their batches through grain worker
processes (`data.loader.workers`), the reference in threads of its own
process: the stream that restarts at the restored step in new workers must
be the uninterrupted stream.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import _smoke_run
from metavos.methods import setup
from metavos.runtime import checkpoint, metric_writer

REPO = pathlib.Path(__file__).resolve().parents[1]
# The reference run reads in-process (the default loader).
WORKERS = ["--config.data.loader.workers=2"]
FIRST = _smoke_run.OVERRIDES["train.checkpoint_every"]
LAST = _smoke_run.OVERRIDES["train.num_steps"]


def _launch(workdir, log_path, cache_dir):
  # One persistent compilation cache for both processes: the resumed run
  # loads the killed run's programs instead of compiling them again.
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  log = open(log_path, "w")
  return subprocess.Popen(
      [sys.executable, "-m", "metavos.main", *_smoke_run.cli_args(workdir),
       *WORKERS],
      cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _wait_for_checkpoint(proc, ckpt_dir: pathlib.Path, step: int,
                         log_path, timeout: float = 300.0) -> None:
  """Polls until `step` is a finished checkpoint (Orbax renames a step's
  temporary folder to `<step>` only once it is complete)."""
  deadline = time.monotonic() + timeout
  while not ((ckpt_dir / str(step)).is_dir()
             and checkpoint.has_checkpoint(ckpt_dir)):
    assert proc.poll() is None, (
        f"exited ({proc.returncode}) before checkpoint {step}:\n"
        + pathlib.Path(log_path).read_text()[-3000:])
    assert time.monotonic() < deadline, f"no checkpoint {step} in {timeout}s"
    time.sleep(0.02)


def _loss_by_step(workdir):
  return {r["step"]: r["loss"] for r in metric_writer.read_metrics(
      pathlib.Path(workdir) / metric_writer.METRICS_FILE)}


def test_kill_9_then_the_same_command_resumes_exactly(tmp_path):
  reference, _ = _smoke_run.trained()
  workdir = tmp_path / "run"
  ckpt_dir = workdir / "checkpoints"

  proc, log = _launch(workdir, tmp_path / "killed.log", tmp_path / "cache")
  try:
    _wait_for_checkpoint(proc, ckpt_dir, FIRST, tmp_path / "killed.log")
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
    log.close()
  assert proc.returncode == -signal.SIGKILL
  with checkpoint.Checkpointer(ckpt_dir, read_only=True) as ckpt:
    at_kill = ckpt.latest_step()
  assert FIRST <= at_kill < LAST, at_kill  # killed mid-run

  proc, log = _launch(workdir, tmp_path / "resumed.log", tmp_path / "cache")
  try:
    proc.wait(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
    log.close()
  output = (tmp_path / "resumed.log").read_text()
  assert proc.returncode == 0, output[-3000:]
  assert f"Training from step {at_kill} (workdir)" in output

  config = _smoke_run.config()
  model = setup.build_model(config, config.seed)
  resumed = checkpoint.restore_subtree(ckpt_dir, "params", model.params)
  uninterrupted = checkpoint.restore_subtree(
      os.path.join(reference, "checkpoints"), "params", model.params)
  moved = max(float(np.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(uninterrupted), jax.tree.leaves(model.params)))
  assert moved > 1e-3  # training moved the parameters
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # One metric line per logged step, the values of the uninterrupted run.
  got, want = _loss_by_step(workdir), _loss_by_step(reference)
  assert sorted(got) == list(range(10, LAST + 1, 10)) == sorted(want)
  np.testing.assert_allclose([got[s] for s in sorted(got)],
                             [want[s] for s in sorted(want)], rtol=1e-5)
