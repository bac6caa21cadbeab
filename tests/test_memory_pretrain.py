"""The synthetic pre-training stage of the memory-network methods
(config.pretrain, metavos.methods.memory_networks.starting_checkpoint)."""

import json
import os

import jax
import numpy as np
import pytest

from configs import oneshot as oneshot_config
from configs import stcn as stcn_config
from configs import twoshot as twoshot_config
from metavos.methods import (memory_networks, oneshot, stcn, train_loop,
                             twoshot)
from metavos.runtime import checkpoint

pytestmark = pytest.mark.usefixtures("fast_compile_cached")


def _config(module=stcn_config):
  c = module.get_config("smoke")
  # The run's update equals the stage's (same clips, steps, loss schedule),
  # so the persistent cache compiles it once.
  c.train.num_steps = 2
  c.loss.start_step, c.loss.end_step = 0, 1
  p = c.pretrain
  p.synthetic_steps, p.num_videos, p.num_frames = 2, 3, 6
  p.image_size, p.max_objects, p.batch_size = (48, 64), 2, 2
  p.seed = 1  # The stage's network starts elsewhere than the run's (seed 0).
  return c


def _params(path, like):
  return checkpoint.restore_subtree(path, "params", like)


def test_stage_config_is_supervised_synthetic_and_ignores_the_run():
  c = stcn_config.get_config("davis16_cpu")
  c.pretrain.synthetic_steps = 600
  c.train.init_from, c.restore, c.seed = "x", "y", 3
  s = memory_networks.pretrain_stage_config(c)
  assert (s.method, s.data.root, s.labels.kind) == ("stcn", "", "all")
  assert (s.data.synthetic.num_videos, s.data.synthetic.num_frames) == (240,
                                                                       16)
  assert (s.train.num_steps, s.train.init_from, s.restore) == (600, "", "")
  assert (s.seed, s.clip.max_objects, s.train.image_size) == (0, 1, (96, 160))
  assert (s.loss.start_step, s.loss.end_step) == (100, 400)
  assert s.pretrain.synthetic_steps == 0  # no stage of its own
  assert s.memory.to_dict() == c.memory.to_dict()  # the same network
  assert c.data.root and c.seed == 3  # the run's config is untouched


def test_pretraining_starts_the_run_and_is_not_repeated(tmp_path):
  config = _config()
  run = str(tmp_path / "run")
  params, _ = stcn.train(config, run)
  stage = os.path.join(run, memory_networks.PRETRAIN_DIR)
  with open(os.path.join(stage, "labels.json")) as f:
    assert json.load(f)  # every frame of the synthetic videos
  lines = [json.loads(x) for x in open(os.path.join(stage, "metrics.jsonl"))]
  assert lines[-1]["step"] == 2 and lines[-1]["labelled_fraction"] == 1.0
  pre = _params(os.path.join(stage, "checkpoints"), params)
  _, fresh = memory_networks.build_network(config)
  # Two AdamW steps of rate <= lr away from the pre-trained network (each
  # Adam step moves a parameter by at most ~lr), far from the run's own
  # initialisation.
  lr = config.optim.lr
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(params), jax.tree.leaves(pre)))
  assert moved <= 2.02 * lr
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(fresh), jax.tree.leaves(pre))) > 20 * lr
  # The run has its checkpoint now: a resume neither reads nor trains it.
  assert memory_networks.starting_checkpoint(config, run) == ""
  # Another run naming the same stage directory restores it, no step more.
  other = _config(oneshot_config)
  other.pretrain.workdir = stage
  path = memory_networks.starting_checkpoint(other, str(tmp_path / "other"))
  assert path == os.path.join(stage, "checkpoints")
  again = [json.loads(x) for x in open(os.path.join(stage, "metrics.jsonl"))]
  assert again == lines


def test_explicit_init_from_wins(tmp_path):
  config = _config()
  config.train.init_from = "/some/checkpoints"
  run = str(tmp_path / "run")
  assert memory_networks.starting_checkpoint(config, run) == "/some/checkpoints"
  assert not os.path.exists(os.path.join(run, memory_networks.PRETRAIN_DIR))
  config.train.init_from, config.pretrain.synthetic_steps = "", 0
  assert memory_networks.starting_checkpoint(config, run) == ""


@pytest.mark.parametrize("method", ["oneshot", "twoshot"])
def test_one_shot_and_two_shot_start_from_the_stage(tmp_path, monkeypatch,
                                                    method):
  """Both trainers hand starting_checkpoint's answer to the training loop
  (two-shot: phase 1, which resumes from <workdir>/phase1)."""
  module = {"oneshot": oneshot_config, "twoshot": twoshot_config}[method]
  config = _config(module)
  seen = []

  def fake_starting_checkpoint(config, workdir, run_dir=None):
    seen.append((workdir, run_dir))
    return "/stage/checkpoints"

  class Stop(Exception):
    pass

  def fake_run(*args, init_from="", **kwargs):
    raise Stop(init_from)

  monkeypatch.setattr(memory_networks, "starting_checkpoint",
                      fake_starting_checkpoint)
  monkeypatch.setattr(train_loop, "run", fake_run)
  run = str(tmp_path / "run")
  with pytest.raises(Stop, match="/stage/checkpoints"):
    {"oneshot": oneshot.train, "twoshot": twoshot.phase1}[method](config,
                                                                   run)
  expected = os.path.join(run, "phase1") if method == "twoshot" else None
  assert seen == [(run, expected)]
