"""The method protocol (metavos.methods.registry): every registered method
trains and evaluates through the one `train.train_and_evaluate` path, and
that path gives every method the annotated frames of `finetune.*` (e-OSVOS
used to ignore `finetune.num_annotated`: its case here failed before the
protocol)."""

import importlib
import json

import numpy as np
import pytest
from PIL import Image

from metavos import train
from metavos.methods import eval_loop, registry, setup


def _smoke(name: str):
  config = importlib.import_module(f"configs.{name}").get_config("smoke")
  config.train.num_steps = 1 if name != "twoshot" else config.train.num_steps
  config.train.checkpoint_every = 1
  config.data.max_eval_videos = 1
  config.eval.pictures = False
  config.finetune.num_annotated = 2
  return config


@pytest.mark.parametrize("name", sorted(registry.METHODS))
def test_every_method_runs_its_smoke_config_through_the_one_path(name,
                                                                 tmp_path):
  config = _smoke(name)
  workdir = str(tmp_path)
  metrics = train.train_and_evaluate(config, workdir)

  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  with open(tmp_path / "metrics.json", encoding="utf-8") as f:
    written = json.load(f)
  assert written == metrics
  assert written["provenance"]["method"] == name
  # Every method's provenance names the checkpoint it evaluated (two-shot's
  # lives in phase2/).
  assert written["provenance"]["checkpoint_step"] is not None

  # Two annotated frames, evenly spaced, were given to the segmenter and
  # their masks kept: the second one's result is exactly its ground truth.
  ds = setup.open_split(config, setup.data_root(config, workdir),
                        config.data.split)
  video = ds.load(ds.sequences[0])
  expected = eval_loop.annotated_frames(config, video)
  assert len(expected) == 2 and expected[1] > expected[0]
  with open(tmp_path / "timing.json", encoding="utf-8") as f:
    stats = json.load(f)["videos"][video.name]
  assert stats["annotated_frames"] == expected
  if "support_frames" in stats:  # OSVOS, e-OSVOS: fine-tuned on both
    assert stats["support_frames"] == expected
  second = expected[1]
  result = np.asarray(Image.open(
      tmp_path / "results" / video.name / f"{video.frame_names[second]}.png"))
  np.testing.assert_array_equal(result, video.masks[second])


def test_registry_refuses_unknown_methods_and_incomplete_modules(
    monkeypatch):
  with pytest.raises(ValueError, match="Unknown config.method 'nope'"):
    registry.get("nope")
  monkeypatch.setitem(registry.METHODS, "broken", "metavos.methods.setup")
  with pytest.raises(TypeError, match="lacks"):
    registry.get("broken")
