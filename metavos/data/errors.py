"""The one exception type for bad input data."""


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
