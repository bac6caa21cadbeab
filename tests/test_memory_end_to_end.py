"""configs/stcn.py:smoke end to end: train, evaluate, labels, resume."""

import json
import os

import jax
import numpy as np
import pytest

from configs import stcn as stcn_config
from metavos import train
from metavos.data import clips, labels
from metavos.methods import memory_networks, stcn
from metavos.runtime import checkpoint


# The three training runs below compile the same update; the persistent cache
# lets the second and third reuse the first's program.
pytestmark = pytest.mark.usefixtures("fast_compile_cached")


def test_train_evaluate_and_resume(tmp_path, monkeypatch):
  config = stcn_config.get_config("smoke")
  # Clip augmentation draws from the step key: the resumed run below must
  # draw the same clips to end with the same parameters.
  config.clip.augment.enabled = True
  full = str(tmp_path / "full")
  metrics = train.train_and_evaluate(config, full)
  with open(os.path.join(full, "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(metrics))
  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  lines = [json.loads(x) for x in open(os.path.join(full, "metrics.jsonl"))]
  assert [x["step"] for x in lines] == [1, 2, 3]
  assert all(x["labelled_fraction"] == 1.0 and np.isfinite(x["loss"])
             for x in lines)
  videos = [v.name for v in os.scandir(os.path.join(full, "results"))]
  used = labels.load(os.path.join(full, "labels.json"),
                     stcn.setup.train_videos(config, full))
  assert set(used) and not set(used) & set(videos)  # train split only
  assert all(len(f) == 6 for f in used.values())  # every annotated frame

  # Killed after the step-2 checkpoint, then resumed: the same parameters.
  part = str(tmp_path / "part")
  real = clips.ClipSampler.sample

  def dying(self, step, *args, **kwargs):
    if step == 2:
      raise KeyboardInterrupt("simulated kill")
    return real(self, step, *args, **kwargs)

  monkeypatch.setattr(clips.ClipSampler, "sample", dying)
  config.mode = "train"
  with pytest.raises(KeyboardInterrupt):
    stcn.train(config, part)
  monkeypatch.setattr(clips.ClipSampler, "sample", real)
  stcn.train(config, part)
  _, init = memory_networks.build_network(config)
  pa, pb = (checkpoint.restore_subtree(os.path.join(w, "checkpoints"),
                                       "params", init) for w in (full, part))
  assert max(float(np.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(pa), jax.tree.leaves(init))) > 0
  for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

  # mode=evaluate from config.restore reproduces the run's evaluation.
  ev = stcn_config.get_config("smoke")
  ev.mode, ev.restore = "evaluate", os.path.join(full, "checkpoints")
  again = train.train_and_evaluate(ev, str(tmp_path / "eval"))
  assert again["global"]["J&F-Mean"] == pytest.approx(
      metrics["global"]["J&F-Mean"], abs=1e-6)
