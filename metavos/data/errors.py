"""The one exception type for bad input data."""

import contextlib


class DataError(ValueError):
  """Bad input data: the message names the offending file and how to fix it."""

  def __init__(self, path, problem: str, fix: str):
    self.path = str(path)
    self.problem = problem
    self.fix = fix
    super().__init__(f"{self.path}: {problem}. Fix: {fix}")

  def __reduce__(self):
    # Rebuilt from its parts, so it crosses into and out of the loader's
    # worker processes (pickle would call __init__ with the message only).
    return type(self), (self.path, self.problem, self.fix)


@contextlib.contextmanager
def naming_settings(names: dict[str, str]):
  """Inside, a DataError's message names other config settings.

  The shared weight loaders speak of `model.pretrained` and `model.backbone`;
  a caller loading another setting's file wraps them, e.g.
  `naming_settings({"model.": "memory.key_"})`, so the fix a user reads names
  the setting they passed (memory.key_pretrained), not one that would not
  change anything.
  """
  try:
    yield
  except DataError as e:
    problem, fix = e.problem, e.fix
    for old, new in names.items():
      problem, fix = problem.replace(old, new), fix.replace(old, new)
    raise DataError(e.path, problem, fix) from e
