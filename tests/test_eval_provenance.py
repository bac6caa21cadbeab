"""Results carry their provenance, and a killed re-evaluation never leaves
a results folder or metrics file that mixes two evaluations."""

import json
import os
import shutil

import numpy as np
import pytest

from configs import osvos
from metavos.methods import eval_loop
from metavos.runtime import checkpoint


def _config():
  config = osvos.get_config("smoke")
  config.eval.pictures = False
  return config


def _segment_with(value, fail_at=None):
  """A fake method: every pixel gets object `value`; raises on video
  `fail_at` (a kill during evaluation)."""
  calls = []
  def segment(video, rng):
    del rng
    calls.append(video.name)
    if len(calls) - 1 == fail_at:
      raise KeyboardInterrupt("killed")
    return np.full(video.masks.shape, value, np.uint8), {"fps": 1.0}
  return segment


def _save_checkpoint(workdir, step):
  with checkpoint.Checkpointer(os.path.join(workdir, "checkpoints")) as c:
    c.save(step, {"params": np.zeros(1)}, {"data_position": step})
    c.wait_until_finished()


def _pixels(workdir):
  """{sequence: the set of values in its result PNGs}."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = {}
  results = os.path.join(workdir, "results")
  for seq in sorted(os.listdir(results)):
    if os.path.isdir(os.path.join(results, seq)):
      out[seq] = {int(v) for f in os.listdir(os.path.join(results, seq))
                  for v in np.unique(np.asarray(
                      Image.open(os.path.join(results, seq, f))))}
  return out


def test_a_killed_re_evaluation_leaves_the_old_results_whole(tmp_path):
  workdir = str(tmp_path)
  config = _config()
  config.data.synthetic.num_videos = 6  # 2 evaluation videos
  _save_checkpoint(workdir, 3)
  first = eval_loop.evaluate_split(config, workdir, _segment_with(1))
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert metrics["provenance"]["checkpoint_step"] == 3
  assert metrics["global"] == first["global"]
  prov = json.loads((tmp_path / "results" / "provenance.json").read_text())
  assert prov["checkpoint_step"] == 3 and prov["config"]["method"] == "osvos"
  old = _pixels(workdir)
  assert len(old) == 2 and all(v == {1} for v in old.values())

  _save_checkpoint(workdir, 5)  # training continued; re-evaluate, killed
  with pytest.raises(KeyboardInterrupt):
    eval_loop.evaluate_split(config, workdir, _segment_with(0, fail_at=1))
  assert _pixels(workdir) == old  # no video of the new evaluation mixed in
  assert not (tmp_path / "metrics.json").exists()  # marked stale, kept
  stale = json.loads((tmp_path / "metrics.stale.json").read_text())
  assert stale["provenance"]["checkpoint_step"] == 3

  eval_loop.evaluate_split(config, workdir, _segment_with(0))
  assert all(v == {0} for v in _pixels(workdir).values())
  assert json.loads((tmp_path / "metrics.json").read_text())[
      "provenance"]["checkpoint_step"] == 5
  assert not (tmp_path / "results.partial").exists()


def test_metavos_evaluate_refuses_a_folder_that_mixes_evaluations(tmp_path):
  from metavos import evaluate  # pylint: disable=g-import-not-at-top
  from metavos.data.errors import DataError  # pylint: disable=g-import-not-at-top
  from metavos.data import writers  # pylint: disable=g-import-not-at-top
  from metavos.methods import setup  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path)
  config = _config()
  config.data.synthetic.num_videos = 6  # 2 evaluation videos
  _save_checkpoint(workdir, 3)
  eval_loop.evaluate_split(config, workdir, _segment_with(1))
  d = config.data
  score = lambda results: evaluate.evaluate_results_dir(
      results, setup.data_root(config, workdir), d.year, d.split,
      d.resolution)
  results = tmp_path / "results"
  assert score(results)["global"]  # one evaluation: scored

  # A copy resets every file time (provenance.json may even come first):
  # still one evaluation.
  copy = tmp_path / "copied"
  shutil.copytree(results, copy, copy_function=shutil.copy)
  os.utime(copy / "provenance.json", (1, 1))
  assert score(copy)["global"] == score(results)["global"]

  # A mask written into it afterwards (e.g. by a later, killed evaluation).
  seq = sorted(p for p in results.iterdir() if p.is_dir())[1]
  png = sorted(seq.glob("*.png"))[2]
  original = png.read_bytes()
  mask = np.asarray(Image.open(png)).copy()
  mask[0, 0] = 1 - mask[0, 0]
  writers.write_davis_results(results, seq.name, [png.stem], mask[None])
  with pytest.raises(DataError, match="mixes evaluations") as e:
    score(results)
  assert str(seq) in str(e.value) and "checkpoint step 3" in str(e.value)
  png.write_bytes(original)
  assert score(results)["global"]  # the masks it recorded again

  # A sequence the recorded evaluation did not write.
  prov = json.loads((results / "provenance.json").read_text())
  kept = prov["sequences"][:1]
  (results / "provenance.json").write_text(
      json.dumps({**prov, "sequences": kept}))
  with pytest.raises(DataError, match="not written by the evaluation of "
                     "checkpoint step 3"):
    score(results)

  # An evaluation stopped before its swap.
  os.replace(results, tmp_path / "results.partial")
  with pytest.raises(DataError, match="did not finish"):
    score(tmp_path / "results.partial")
