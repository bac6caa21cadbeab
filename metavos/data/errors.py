"""The one exception type for bad input data."""

import contextlib
import re


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


# The settings the shared weight loaders name in their messages; a key of a
# weights file ('model.backbone.conv1.weight') is not one of them.
_MODEL_SETTING = re.compile(r"\bmodel\.(pretrained|backbone)\b(?!\.)")


@contextlib.contextmanager
def naming_settings(prefix: str):
  """Inside, a DataError names `<prefix>pretrained` / `<prefix>backbone`.

  The shared weight loaders' messages name `model.pretrained` and
  `model.backbone`; a caller loading another setting's file (the memory
  encoders: `naming_settings("memory.key_")`) wraps them, so the fix a user
  reads names the setting they passed, not one that changes nothing. The
  error is raised again with the rewritten message and its own traceback.
  """
  try:
    yield
  except DataError as e:
    rename = lambda text: _MODEL_SETTING.sub(prefix + r"\1", text)
    raise DataError(e.path, rename(e.problem), rename(e.fix)).with_traceback(
        e.__traceback__) from None
