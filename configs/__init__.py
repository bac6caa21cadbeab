"""metavos configs: one file per method, `get_config(arg)` in each.

The files of this folder are the source of truth. From a checkout they run
as `--config=configs/<method>.py:<arg>`; an installed metavos carries the
same files as `metavos.configs` (the `metavos/configs` link in the
repository), so in Colab or any directory after `pip install`:

  from metavos import configs
  config = configs.get_config("eosvos", "smoke")  # = configs/eosvos.py:smoke

and the command lines' `--config=configs/<method>.py:<arg>` work from any
directory (`find_config_files`).
"""

import importlib
import os

import ml_collections

METHODS = ("osvos", "eosvos", "stcn", "oneshot", "twoshot")


def get_config(method: str, arg: str | None = None
               ) -> ml_collections.ConfigDict:
  """The config of `configs/<method>.py:<arg>`."""
  if method not in METHODS:
    raise ValueError(f"Unknown method {method!r}; configs exist for "
                     f"{list(METHODS)}.")
  return importlib.import_module(f"{__name__}.{method}").get_config(arg)


def find_config_files(argv: list[str]) -> list[str]:
  """Command-line arguments with `--config=configs/<method>.py[:arg]`
  pointing at this folder when `configs/` is not in the working directory
  (an installed metavos run from anywhere); unchanged in a checkout."""
  out, here = [], os.path.dirname(os.path.realpath(__file__))
  for i, a in enumerate(argv):
    flag = a.startswith("--config=")
    path = a[len("--config="):] if flag else (
        a if i and argv[i - 1] == "--config" else None)
    if path is not None and path.startswith("configs/"):
      file, sep, arg = path.partition(":")
      installed = os.path.join(here, file[len("configs/"):])
      if not os.path.exists(file) and os.path.exists(installed):
        a = ("--config=" if flag else "") + installed + sep + arg
    out.append(a)
  return out
