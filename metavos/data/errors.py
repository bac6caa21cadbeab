"""The one exception type for bad input data."""


class DataError(ValueError):
  """Bad input data: the message names the offending file and how to fix it."""

  def __init__(self, path, problem: str, fix: str):
    self.path = str(path)
    self.problem = problem
    self.fix = fix
    super().__init__(f"{self.path}: {problem}. Fix: {fix}")
