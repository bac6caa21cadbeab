"""Shared test fixtures."""

import pathlib

import pytest

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
