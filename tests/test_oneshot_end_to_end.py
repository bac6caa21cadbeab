"""configs/oneshot.py:smoke end to end: train (static stage, then videos),
evaluate, one labelled frame per video, the evaluate-from-restore contract."""

import json
import os

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from configs import oneshot as oneshot_config
from metavos import train
from metavos.data import labels
from metavos.methods import setup


@pytest.fixture(autouse=True)
def fast_compile(tmp_path_factory):
  # The evaluation after training and the one from `restore` compile the
  # same propagation; a persistent cache lets the second reuse the first's.
  names = ("jax_disable_most_optimizations", "jax_compilation_cache_dir",
           "jax_persistent_cache_min_compile_time_secs")
  old = {n: jax.config.values[n] for n in names}
  jax.config.update(names[0], True)
  jax.config.update(names[1], str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update(names[2], 0)
  compilation_cache.reset_cache()
  yield
  for n, v in old.items():
    jax.config.update(n, v)
  compilation_cache.reset_cache()


def test_train_evaluate_one_label_per_video(tmp_path):
  config = oneshot_config.get_config("smoke")
  assert config.oneshot.static_pretrain_steps == 1  # both stages run
  run = str(tmp_path / "run")
  metrics = train.train_and_evaluate(config, run)
  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  with open(os.path.join(run, "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(metrics))

  videos = setup.train_videos(config, run)
  used = labels.load(os.path.join(run, "labels.json"), videos)
  assert used == {v.name: [0] for v in videos}  # kind=first: frame 0 only
  frames = sum(int(np.sum(v.annotated)) for v in videos)
  lines = [json.loads(x) for x in open(os.path.join(run, "metrics.jsonl"))]
  assert [x["step"] for x in lines] == [1, 2, 3]
  for x in lines:
    assert x["labelled_fraction"] == pytest.approx(len(videos) / frames)
    assert np.isfinite(x["loss"]) and x["grad_norm"] > 0

  ev = oneshot_config.get_config("smoke")
  ev.mode, ev.restore = "evaluate", os.path.join(run, "checkpoints")
  again = train.train_and_evaluate(ev, str(tmp_path / "eval"))
  assert again["global"]["J&F-Mean"] == pytest.approx(
      metrics["global"]["J&F-Mean"], abs=1e-6)
