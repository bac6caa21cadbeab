"""One trained OSVOS smoke run, shared by the tests that need a checkpoint.

Training costs ~20 s on 2 CPU cores, so test_segment_cli.py (a checkpoint to
segment with), test_kill_resume.py (the uninterrupted reference) and
test_visualize_run.py (a real report) share one run per pytest session.
The command-line form of the same run is `cli_args()`.
"""

import atexit
import functools
import shutil
import tempfile

import jax

from configs import osvos as osvos_config
from metavos import train

CONFIG = "configs/osvos.py:smoke"
# Longer than the smoke preset, so that a run can be killed between
# checkpoints (tests/test_kill_resume.py).
OVERRIDES = {"train.num_steps": 60, "train.checkpoint_every": 10,
             "train.log_every": 10}


def config():
  c = osvos_config.get_config("smoke")
  for key, value in OVERRIDES.items():
    section, field = key.split(".")
    c[section][field] = value
  return c


def cli_args(workdir: str) -> list[str]:
  """`python -m metavos.main` arguments for the same run."""
  return [f"--config={CONFIG}", f"--workdir={workdir}"] + [
      f"--config.{k}={v}" for k, v in OVERRIDES.items()]


@functools.cache
def trained() -> tuple[str, dict]:
  """Trains and evaluates `config()` once; returns (workdir, metrics).

  Compiled with `jax_disable_most_optimizations`; subprocesses that must
  reproduce it bit for bit set JAX_DISABLE_MOST_OPTIMIZATIONS=1.
  """
  workdir = tempfile.mkdtemp(prefix="metavos_smoke_")
  atexit.register(shutil.rmtree, workdir, ignore_errors=True)
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    metrics = train.train_and_evaluate(config(), workdir)
  finally:
    jax.config.update("jax_disable_most_optimizations", old)
  return workdir, metrics
