"""configs/oneshot.py:smoke end to end: train (static stage, then videos),
evaluate, one labelled frame per video, the evaluate-from-restore contract."""

import json
import os

import numpy as np
import pytest

from configs import oneshot as oneshot_config
from metavos import train
from metavos.data import labels
from metavos.methods import setup


# The evaluation after training and the one from `restore` compile the same
# propagation; the persistent cache lets the second reuse the first's.
pytestmark = pytest.mark.usefixtures("fast_compile_cached")


def test_train_evaluate_one_label_per_video(tmp_path):
  config = oneshot_config.get_config("smoke")
  assert config.oneshot.static_pretrain_steps == 1  # both stages run
  config.clip.augment.enabled = True  # Augmented clips in both stages.
  run = str(tmp_path / "run")
  metrics = train.train_and_evaluate(config, run)
  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  with open(os.path.join(run, "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(metrics))

  videos = setup.train_videos(config, run)
  used = labels.load(os.path.join(run, "labels.json"), videos)
  # kind=random, per_video=1: one annotated frame of each video, the draw
  # of labels.seed.
  assert (config.labels.kind, config.labels.per_video) == ("random", 1)
  assert used == labels.random_label_set(videos, 1, config.labels.seed)
  assert all(len(used[v.name]) == 1 and v.annotated[used[v.name][0]]
             for v in videos)
  frames = sum(int(np.sum(v.annotated)) for v in videos)
  lines = [json.loads(x) for x in open(os.path.join(run, "metrics.jsonl"))]
  assert [x["step"] for x in lines] == [1, 2, 3]
  for x in lines:
    assert x["labelled_fraction"] == pytest.approx(len(videos) / frames)
    assert np.isfinite(x["loss"]) and x["grad_norm"] > 0

  ev = oneshot_config.get_config("smoke")  # (evaluation: no clips)
  ev.mode, ev.restore = "evaluate", os.path.join(run, "checkpoints")
  again = train.train_and_evaluate(ev, str(tmp_path / "eval"))
  assert again["global"]["J&F-Mean"] == pytest.approx(
      metrics["global"]["J&F-Mean"], abs=1e-6)
