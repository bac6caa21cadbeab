"""Shared test fixtures."""

import os
import pathlib

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from metavos.data import synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> pathlib.Path:
  """A tiny synthetic dataset in the DAVIS 2017 layout (made once per session).

  3 sequences ("synthetic-000" .. "-002") x 6 frames of 48x64, 2 objects each
  (ids 1, 2), resolution folder "480p"; split "train" = the first 2, "val" =
  the last. Read it with `DavisDataset(root, split=...)`; do not modify it
  (copy it to tmp_path first).
  """
  return synthetic.generate(
      tmp_path_factory.mktemp("synthetic"), num_videos=3, num_frames=6,
      height=48, width=64, max_objects=2, seed=0)


def _set(values: dict) -> dict:
  old = {name: jax.config.values[name] for name in values}
  for name, value in values.items():
    jax.config.update(name, value)
  return old


@pytest.fixture(scope="module")
def fast_compile():
  """XLA with most optimisations off for a test module.

  Test programs run on tiny inputs, so compile time dominates; numerics stay
  within the tests' tolerances. Use with
  `pytestmark = pytest.mark.usefixtures("fast_compile")`.
  """
  old = _set({"jax_disable_most_optimizations": True})
  yield
  _set(old)


@pytest.fixture
def fast_compile_cached():
  """`fast_compile` for one test, for end-to-end tests that run the same
  program in several runs (train, resume, evaluate from restore): with the
  session's compilation cache, later runs reuse the first's programs."""
  old = _set({"jax_disable_most_optimizations": True})
  yield
  _set(old)


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
  """One persistent compilation cache for the whole run, shared by the
  xdist workers and by the subprocesses tests start (through
  JAX_COMPILATION_CACHE_DIR): a program that several tests compile (the
  smoke configs many end-to-end tests run) compiles once. A cache key
  covers the program and the compile options (`fast_compile`'s included),
  so a hit is the executable compiling would give."""
  base = tmp_path_factory.getbasetemp()
  # Under xdist each worker has its own base directory in the run's one.
  root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  path = root / "jax_cache"
  path.mkdir(exist_ok=True)
  env = {"JAX_COMPILATION_CACHE_DIR": str(path),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": str(_CACHE_MIN_SECS)}
  old_env = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  old = _set({"jax_compilation_cache_dir": str(path),
              "jax_persistent_cache_min_compile_time_secs": _CACHE_MIN_SECS})
  compilation_cache.reset_cache()  # takes the directory set above
  yield path
  _set(old)
  compilation_cache.reset_cache()
  for k, v in old_env.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


# Programs that compile faster than this are not worth a cache file.
_CACHE_MIN_SECS = 0.3


# The slowest files (measured with --durations on the 2-core box), longest
# first. `--dist loadfile` hands whole files to the two workers in
# collection order, so starting with these packs the run tighter than
# leaving a 2-4 minute file for last while the other worker idles.
_SLOW_FILES = (
    "test_meta_sharding.py", "test_oneshot_sharding.py",
    "test_methods_end_to_end.py", "test_maskrcnn_end_to_end.py",
    "test_multihost.py", "test_twoshot_pipeline.py",
    "test_memory_end_to_end.py", "test_memory_oneshot.py",
    "test_memory_pretrain.py", "test_oneshot_end_to_end.py",
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
