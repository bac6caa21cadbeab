"""Atomic writes: whole files only, with the process's normal permissions."""

import os

import pytest

from metavos.runtime import files


def test_atomic_files_get_the_mode_open_would_give(tmp_path):
  old = os.umask(0o022)
  try:
    files.atomic_write_text(tmp_path / "a.json", "{}")
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
  finally:
    os.umask(old)
  mode = lambda p: os.stat(p).st_mode & 0o777
  assert mode(tmp_path / "a.json") == mode(plain) == 0o644


def test_a_failed_write_leaves_nothing(tmp_path):
  target = tmp_path / "out.txt"
  target.write_text("old")
  with pytest.raises(RuntimeError):
    with files.atomic_open(target, "w") as f:
      f.write("new")
      raise RuntimeError("killed")
  assert target.read_text() == "old"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
