"""launch/colab.ipynb runs top to bottom, headless, without Jupyter, on
metavos installed the notebook's way.

The install cell's `pip install "$METAVOS_SOURCE"` runs with a wheel built
from this checkout as the source, into a scratch folder (`--target`, no
dependencies: they are this environment's). The code cells are joined into
one script and run in a subprocess from an empty folder whose Python sees
that folder and this environment's packages but not the checkout (`-S`, so
the editable install's import hook is off): the run proves the installed
wheel carries the configs. Without IPython installed, a stand-in for
`IPython.display` records what the notebook shows, so the test can check that
every picture it displays exists and decodes.
"""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import textwrap

from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "launch" / "colab.ipynb"

# Stands in for IPython.display where IPython is not installed: records what
# the notebook shows as JSON lines. (A fake `IPython` package would mislead
# libraries that probe for it, e.g. treescope, so the import is redirected.)
_DISPLAY_STUB = """
import json, os

_log = open(os.environ["DISPLAY_LOG"], "a")


class Image:
  def __init__(self, filename=None, **kwargs):
    self.filename = filename


class HTML:
  def __init__(self, data=None, **kwargs):
    self.data = data


def display(*objs, **kwargs):
  for o in objs:
    _log.write(json.dumps({"type": type(o).__name__,
                           "filename": getattr(o, "filename", None),
                           "html": getattr(o, "data", None)}) + "\\n")
    _log.flush()
"""


def notebook_script(path: pathlib.Path) -> str:
  """The notebook's code cells as one script, without shell/magic lines."""
  notebook = json.loads(path.read_text())
  assert notebook["nbformat"] == 4
  parts = []
  for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
      continue
    lines = "".join(cell["source"]).splitlines()
    parts.append("\n".join(l for l in lines
                           if not l.lstrip().startswith(("!", "%"))))
  return "\n\n".join(parts)


# The notebook's one shell line: a plain (non-editable) install.
INSTALL = '!pip install -q "$METAVOS_SOURCE"'


def test_notebook_shell_lines_are_the_install_only():
  notebook = json.loads(NOTEBOOK.read_text())
  magic = [l.strip() for c in notebook["cells"] if c["cell_type"] == "code"
           for l in "".join(c["source"]).splitlines()
           if l.lstrip().startswith(("!", "%"))]
  assert magic == [INSTALL]
  assert "<" not in notebook_script(NOTEBOOK)  # no placeholder left


def _install_like_the_notebook(tmp_path) -> pathlib.Path:
  """The install cell, with a wheel of this checkout as METAVOS_SOURCE,
  into a scratch folder; returns the folder."""
  wheels, target, source = (tmp_path / "wheel", tmp_path / "site",
                            tmp_path / "source")
  # A copy without build products: setuptools builds in the source tree and
  # would package stale files left in its build/ folder.
  shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
      ".git", ".venv", ".ci-venv", "runs", "build", "*.egg-info",
      ".pytest_cache", "__pycache__"))
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "-w", str(wheels), str(source)], check=True, timeout=300)
  (wheel,) = wheels.glob("metavos-*.whl")
  command = INSTALL[1:].replace('"$METAVOS_SOURCE"', str(wheel)).split()
  subprocess.run([sys.executable, "-m", *command, "--no-deps", "--no-index",
                  "--target", str(target)], check=True, timeout=300)
  return target


def test_notebook_runs_headless(tmp_path):
  script = notebook_script(NOTEBOOK)
  log = tmp_path / "display.jsonl"
  if importlib.util.find_spec("IPython") is None:
    (tmp_path / "_display_stub.py").write_text(_DISPLAY_STUB)
    script = script.replace("from IPython.display import",
                            "from _display_stub import")
  # Where metavos and every config came from, for the checks below.
  script += textwrap.dedent("""

      import metavos
      print("METAVOS_FROM", metavos.__file__)
      print("CONFIGS", json.dumps({f"{m}:{a}": configs.get_config(m, a).to_dict()
                                   for m in configs.METHODS
                                   for a in ("", "smoke")}))
      """)
  site = _install_like_the_notebook(tmp_path)
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1", DISPLAY_LOG=str(log),
             PYTHONPATH=os.pathsep.join(
                 [str(site), str(tmp_path), sysconfig.get_path("purelib"),
                  sysconfig.get_path("platlib")]))
  proc = subprocess.run([sys.executable, "-S", "-c", script], cwd=run_dir,
                        env=env, capture_output=True, text=True, timeout=400)
  assert proc.returncode == 0, proc.stderr[-4000:]
  lines = dict(l.split(" ", 1) for l in proc.stdout.splitlines()
               if l.startswith(("METAVOS_FROM", "CONFIGS")))
  assert lines["METAVOS_FROM"].startswith(str(site)), lines["METAVOS_FROM"]
  # The installed configs are the checkout's configs/ files.
  from configs import METHODS  # pylint: disable=import-outside-toplevel
  want = {f"{m}:{a}": importlib.import_module(f"configs.{m}").get_config(
      a).to_dict() for m in METHODS for a in ("", "smoke")}
  assert json.loads(lines["CONFIGS"]) == json.loads(json.dumps(want))
  tmp_path = run_dir
  workdir = tmp_path / "runs" / "colab_smoke"
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert 0 <= metrics["global"]["J&F-Mean"] <= 1
  assert f"J&F-Mean {metrics['global']['J&F-Mean']:.4f}" in proc.stdout
  assert (workdir / "report.html").is_file()
  videos = sorted(d.name for d in (workdir / "results").iterdir()
                  if d.is_dir())
  assert videos
  for name in videos:
    for picture in (f"{name}.gif", f"{name}_J.png"):
      with Image.open(workdir / "pictures" / picture) as im:
        im.load()
  if log.exists():  # the stand-in display ran: check what was shown
    shown = [json.loads(l) for l in log.read_text().splitlines()]
    images = [s["filename"] for s in shown if s["type"] == "Image"]
    assert len(images) == 1 + 2 * len(videos)  # demo + GIF and plot each
    for filename in images:
      with Image.open(tmp_path / filename) as im:
        im.load()
    tables = [s["html"] for s in shown if s["type"] == "HTML"]
    assert len(tables) == 1 and "data-value" in tables[0]
