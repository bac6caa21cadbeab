"""The method protocol (metavos.methods.registry): every registered method
is one module with `train` and `load_segmenter`, and evaluates through the
one `train.train_and_evaluate` path, which gives every method the annotated
frames of `finetune.*` (e-OSVOS used to ignore `finetune.num_annotated`:
its case here failed before the protocol).

Training through the same path is what each method's end-to-end test runs
(test_methods_end_to_end: OSVOS, e-OSVOS; test_memory_end_to_end: STCN;
test_oneshot_end_to_end; test_twoshot_pipeline); here the parameters are
the untrained network's, saved as the method's trainer saves them, so each
case costs one evaluation compile.
"""

import importlib
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from metavos import train
from metavos.methods import (eosvos, eval_loop, memory_networks, registry,
                             setup, twoshot)
from metavos.runtime import checkpoint


def _smoke(name: str):
  config = importlib.import_module(f"configs.{name}").get_config("smoke")
  assert config.method == name
  config.data.max_eval_videos = 1
  config.eval.pictures = False
  config.finetune.num_annotated = 2
  return config


def _save_untrained(config, workdir: str) -> None:
  """The state entry each method's evaluation restores, at step 1."""
  if config.method in ("osvos", "eosvos"):
    params = setup.build_model(config, config.seed).params
    state = ({"params": params} if config.method == "osvos" else
             {"meta_params": eosvos.initial_meta_params(config, params)})
  else:
    state = {"params": memory_networks.build_network(config)[1]}
  folder = (os.path.join(workdir, twoshot.PHASE2) if config.method ==
            "twoshot" else workdir)
  with checkpoint.Checkpointer(os.path.join(folder, "checkpoints")) as c:
    c.save(1, jax.device_get(state), {"data_position": 1})
    c.wait_until_finished()


def test_every_method_module_follows_the_protocol():
  for name in registry.METHODS:
    module = registry.get(name)
    assert all(callable(getattr(module, f)) for f in registry.PROTOCOL)
    for dropped in ("evaluate", "train_and_evaluate"):  # one path only
      assert not hasattr(module, dropped), (name, dropped)


@pytest.mark.parametrize("name", sorted(registry.METHODS))
def test_every_method_evaluates_two_annotated_frames_through_the_one_path(
    name, tmp_path):
  config = _smoke(name)
  workdir = str(tmp_path)
  _save_untrained(config, workdir)
  config.mode = "evaluate"
  metrics = train.train_and_evaluate(config, workdir)

  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  with open(tmp_path / "metrics.json", encoding="utf-8") as f:
    written = json.load(f)
  assert written == metrics
  # Every method's provenance names the checkpoint it evaluated (two-shot's
  # lives in phase2/).
  assert written["provenance"]["method"] == name
  assert written["provenance"]["checkpoint_step"] == 1

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
