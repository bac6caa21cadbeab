"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import IO, Iterator


def default_mode() -> int:
  """The mode `open()` would give a new file under this process's umask.

  mkstemp makes 0600 files; results are chmod-ed to this ordinary mode so
  that other users of a shared machine can read them as any other file.
  """
  try:  # Linux: read the umask without changing it (thread-safe)
    with open("/proc/self/status", encoding="ascii") as f:
      mask = next(int(line.split()[1], 8) for line in f
                  if line.startswith("Umask:"))
  except (OSError, StopIteration, ValueError, IndexError):
    mask = os.umask(0o022)
    os.umask(mask)
  return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb") -> Iterator[IO]:
  """Opens a temporary file next to `path`; renames it onto `path` on success.

  On an exception the temporary file is removed and `path` is untouched.
  The file gets the permissions a plain `open()` would give it.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, default_mode())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def atomic_write_bytes(path, data: bytes) -> None:
  with atomic_open(path, "wb") as f:
    f.write(data)


def atomic_write_text(path, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))
