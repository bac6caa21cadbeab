"""Shared test fixtures, and XLA flags for the whole test run."""

import os
import pathlib

# Test programs run on tiny inputs, so XLA:CPU's compile time dominates the
# suite. Its older elemental emitters compile a program about 45% faster
# than the default fusion emitters (the XMem training step: 36 s -> 20 s);
# the programs compute the same functions. Set before JAX starts, for this
# process and every subprocess a test starts (the subprocess helpers add
# their device count to these flags instead of replacing them).
_FAST_XLA_FLAG = "--xla_cpu_use_fusion_emitters=false"
if _FAST_XLA_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      [os.environ.get("XLA_FLAGS", ""), _FAST_XLA_FLAG]).strip()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
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
def fast_compile_cached(tmp_path_factory):
  """`fast_compile` plus a persistent compilation cache for one test.

  For end-to-end tests that run the same program in several runs (train,
  resume, evaluate from restore): later runs reuse the first's compiled
  programs instead of compiling them again.
  """
  old = _set({"jax_disable_most_optimizations": True,
              "jax_compilation_cache_dir":
                  str(tmp_path_factory.mktemp("jax_cache")),
              "jax_persistent_cache_min_compile_time_secs": 0})
  compilation_cache.reset_cache()  # takes the directory set above
  yield
  _set(old)
  compilation_cache.reset_cache()


# The slowest files (measured with --durations on a 2-core AVX2 EPYC box,
# 2026-12-07), longest first. `--dist loadfile` hands whole files to the two
# workers in queue order, so starting with these packs the run tighter than
# leaving a 1-2 minute file for last while the other worker idles.
_SLOW_FILES = (
    "test_methods_end_to_end.py", "test_memory_methods_xmem.py",
    "test_segment_cli.py", "test_maskrcnn_end_to_end.py",
    "test_multihost.py", "test_memory_oneshot.py",
    "test_oneshot_sharding.py", "test_kill_resume.py",
    "test_methods_protocol.py", "test_twoshot_pipeline.py",
    "test_memory_end_to_end.py", "test_finetune_frozen.py",
    "test_twoshot_interface.py", "test_visualize.py",
    "test_oneshot_end_to_end.py", "test_memory_pretrain.py",
    "test_meta_frozen.py", "test_notebook.py", "test_memory_vgg.py",
    "test_maskrcnn_model.py", "test_parent_frozen.py",
    "test_memory_chain.py",
)


def pytest_configure(config):
  # pytest-xdist >= 3.6 re-sorts `--dist loadfile` files by their number of
  # tests (`--loadscope-reorder`, on by default), which would undo the order
  # of `_SLOW_FILES` above: a file of one 65 s test went last, leaving a
  # worker idle. Off, the queue keeps the collection order: the suite took
  # 15m21s alone on a 2-core AVX2 box against 16m15s with the reordering
  # (one run each, same session, 2026-12-07).
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
