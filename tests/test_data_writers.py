"""Tests for metavos.data.writers: layouts, atomicity, submission zip."""

import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from metavos.data import io, writers
from metavos.data.errors import DataError


def _masks(num, value_offset=0):
  return np.stack([np.full((6, 8), t + value_offset, np.uint8)
                   for t in range(num)])


def _all_files(root):
  return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_davis_results_layout_and_round_trip(tmp_path):
  masks = _masks(3)
  folder = writers.write_davis_results(tmp_path, "bear", ["00000", "00001",
                                                          "00002"], masks)
  assert folder == tmp_path / "bear"
  assert _all_files(tmp_path) == [f"bear/0000{t}.png" for t in range(3)]
  for t in range(3):
    path = folder / f"0000{t}.png"
    np.testing.assert_array_equal(io.read_mask(path), masks[t])
    with Image.open(path) as image:
      assert image.mode == "P"


def test_davis_results_bad_mask_writes_nothing(tmp_path):
  masks = list(_masks(3))
  masks[2] = masks[2].astype(np.int32)
  with pytest.raises(DataError, match=r"bear/00002\.png: .*int32"):
    writers.write_davis_results(tmp_path, "bear", ["00000", "00001", "00002"],
                                masks)
  assert _all_files(tmp_path) == []


def test_davis_results_failure_midway_leaves_no_partial_file(tmp_path,
                                                             monkeypatch):
  names = ["00000", "00001", "00002"]
  writers.write_davis_results(tmp_path, "bear", names, _masks(3))
  real_fsync, calls = os.fsync, []

  def failing_fsync(fd):
    calls.append(fd)
    if len(calls) == 2:  # The disk "fails" while writing the second file.
      raise OSError("disk full")
    real_fsync(fd)

  monkeypatch.setattr(os, "fsync", failing_fsync)
  with pytest.raises(OSError, match="disk full"):
    writers.write_davis_results(tmp_path, "bear", names, _masks(3, 10))
  assert _all_files(tmp_path) == [f"bear/{n}.png" for n in names]  # No temps.
  np.testing.assert_array_equal(io.read_mask(tmp_path / "bear/00000.png"),
                                _masks(1, 10)[0])  # Finished: new content.
  np.testing.assert_array_equal(io.read_mask(tmp_path / "bear/00001.png"),
                                _masks(3)[1])  # Failed: old content intact.


def test_davis_results_count_mismatch(tmp_path):
  with pytest.raises(ValueError, match="2 frame names but 3 masks"):
    writers.write_davis_results(tmp_path, "bear", ["a", "b"], _masks(3))


META = {"videos": {
    "v1": {"objects": {"1": {"frames": ["00000", "00005"]},
                       "2": {"frames": ["00005", "00010"]}}},
    "v2": {"objects": {"1": {"frames": ["00010"]}}}}}


def _predictions():
  return {
      # Extra frames (00015, 00000 of v2) must not be written.
      "v1": {s: np.full((4, 5), i, np.uint8)
             for i, s in enumerate(["00000", "00005", "00010", "00015"])},
      "v2": {s: np.full((4, 5), 2, np.uint8) for s in ["00000", "00010"]},
  }


def test_youtube_vos_zip_holds_exactly_requested_frames(tmp_path):
  zip_path = writers.write_youtube_vos_submission(tmp_path, _predictions(), META)
  assert zip_path == tmp_path / "submission.zip"
  expected = ["Annotations/v1/00000.png", "Annotations/v1/00005.png",
              "Annotations/v1/00010.png", "Annotations/v2/00010.png"]
  with zipfile.ZipFile(zip_path) as archive:
    assert sorted(archive.namelist()) == expected
    archive.extractall(tmp_path / "unzipped")
  np.testing.assert_array_equal(
      io.read_mask(tmp_path / "unzipped/Annotations/v1/00010.png"),
      np.full((4, 5), 2, np.uint8))
  assert _all_files(tmp_path) == sorted(
      expected + ["submission.zip"] + [f"unzipped/{e}" for e in expected])


def test_youtube_vos_zip_is_deterministic(tmp_path):
  a = writers.write_youtube_vos_submission(tmp_path / "a", _predictions(), META)
  b = writers.write_youtube_vos_submission(tmp_path / "b", _predictions(), META)
  assert a.read_bytes() == b.read_bytes()


def test_youtube_vos_missing_frame_writes_nothing(tmp_path):
  predictions = _predictions()
  del predictions["v2"]["00010"]
  with pytest.raises(ValueError, match="v2/00010"):
    writers.write_youtube_vos_submission(tmp_path, predictions, META)
  assert _all_files(tmp_path) == []
