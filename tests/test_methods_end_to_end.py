"""Each method's smoke config end to end: train, evaluate, resume, restore."""

import json
import os

import jax
import numpy as np
import pytest

from configs import eosvos as eosvos_config
from configs import osvos as osvos_config
from metavos import train
from metavos.data import sampling
from metavos.methods import eosvos, setup
from metavos.methods import osvos as osvos_method
from metavos.runtime import checkpoint


pytestmark = pytest.mark.usefixtures("fast_compile")


def _check_outputs(workdir, metrics, num_steps):
  assert set(metrics["global"]) == {"J&F-Mean", "J-Mean", "J-Recall",
                                    "J-Decay", "F-Mean", "F-Recall",
                                    "F-Decay"}
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(metrics))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == list(range(1, num_steps + 1))
  assert os.path.exists(os.path.join(workdir, "config.json"))
  seqs = [d.name for d in os.scandir(os.path.join(workdir, "results"))
          if d.is_dir()]
  assert seqs, "no results written"
  frames = os.listdir(os.path.join(workdir, "results", seqs[0]))
  assert len(frames) == 6 and all(f.endswith(".png") for f in frames)
  assert checkpoint.has_checkpoint(os.path.join(workdir, "checkpoints"))


@pytest.mark.parametrize("module,key,sampler_cls,train_only", [
    (eosvos_config, "meta_params", sampling.TaskSampler, eosvos.train),
    (osvos_config, "params", sampling.FrameSampler, osvos_method.train)])
def test_train_resume_and_evaluate(tmp_path, monkeypatch, module, key,
                                   sampler_cls, train_only,
                                   fast_compile_cached):
  del fast_compile_cached  # the resumed run and the evaluation reuse programs
  config = module.get_config("smoke")
  full = str(tmp_path / "full")
  metrics = train.train_and_evaluate(config, full)
  _check_outputs(full, metrics, config.train.num_steps)

  # The run dies right after the step-2 checkpoint; the same command again
  # resumes from it and ends with the same parameters (training only: the
  # evaluation is checked above and below).
  part = str(tmp_path / "part")
  real_sample = sampler_cls.sample

  def dying_sample(self, step, *args, **kwargs):
    if step == 2:
      raise KeyboardInterrupt("simulated kill after the step-2 checkpoint")
    return real_sample(self, step, *args, **kwargs)

  monkeypatch.setattr(sampler_cls, "sample", dying_sample)
  with pytest.raises(KeyboardInterrupt):
    train_only(config, part)
  monkeypatch.setattr(sampler_cls, "sample", real_sample)
  train_only(config, part)
  for run in (full, part):
    ckpt = checkpoint.Checkpointer(os.path.join(run, "checkpoints"),
                                   read_only=True)
    assert ckpt.latest_step() == config.train.num_steps
  model = setup.build_model(config, config.seed)
  abstract = (eosvos.initial_meta_params(config, model.params)
              if key == "meta_params" else model.params)
  pa = checkpoint.restore_subtree(os.path.join(full, "checkpoints"), key,
                                  abstract)
  pb = checkpoint.restore_subtree(os.path.join(part, "checkpoints"), key,
                                  abstract)
  moved = max(float(np.abs(x - y).max()) for x, y in zip(
      jax.tree.leaves(pa), jax.tree.leaves(abstract)))
  assert moved > 0  # training changed the parameters
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)

  # mode=evaluate from config.restore reproduces the run's own evaluation.
  ev = module.get_config("smoke")
  ev.mode = "evaluate"
  ev.restore = os.path.join(full, "checkpoints")
  again = train.train_and_evaluate(ev, str(tmp_path / "eval"))
  assert again["global"]["J&F-Mean"] == pytest.approx(
      metrics["global"]["J&F-Mean"], abs=1e-6)
  # The evaluation records its own config; it never writes config.json.
  recorded = json.loads((tmp_path / "eval" / "eval_config.json").read_text())
  assert recorded["mode"] == "evaluate" and recorded["restore"] == ev.restore
  assert not (tmp_path / "eval" / "config.json").exists()


def test_evaluate_without_checkpoint_says_what_to_pass(tmp_path):
  config = eosvos_config.get_config("smoke")
  config.mode = "evaluate"
  with pytest.raises(ValueError, match="config.restore"):
    train.train_and_evaluate(config, str(tmp_path))


def test_unknown_method_and_mode(tmp_path):
  config = eosvos_config.get_config("smoke")
  config.method = "nope"
  with pytest.raises(ValueError, match="eosvos"):
    train.train_and_evaluate(config, str(tmp_path))
  config.method, config.mode = "eosvos", "serve"
  with pytest.raises(ValueError, match="train"):
    train.train_and_evaluate(config, str(tmp_path))


def _max_gap(a, b):
  return max(float(np.abs(x - y).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_eosvos_starts_from_an_osvos_parent(tmp_path, monkeypatch,
                                            fast_compile_cached):
  """parent.num_steps: an OSVOS parent is trained first in <workdir>/parent
  (once: a second start resumes past it) and the meta-learned init starts
  there; meta.init_from, when set, is used instead of a parent stage."""
  del fast_compile_cached  # the second start reuses compiled steps
  config = eosvos_config.get_config("smoke")
  config.parent.num_steps = 3
  config.meta.outer_lr = 1e-6  # the init barely moves in 3 meta-steps
  staged = str(tmp_path / "staged")
  eosvos.train(config, staged)
  parent_ckpt = os.path.join(staged, "parent", "checkpoints")
  model = setup.build_model(config, config.seed)
  parent = checkpoint.restore_subtree(parent_ckpt, "params", model.params)
  read_meta = lambda w: checkpoint.restore_subtree(
      os.path.join(w, "checkpoints"), "meta_params",
      eosvos.initial_meta_params(config, model.params))
  meta = read_meta(staged)
  assert _max_gap(meta["init"], parent) < 1e-4 < _max_gap(model.params,
                                                          parent)
  # Starting again: the meta-training state is restored, so the parent
  # stage is not even entered and nothing is trained again.
  log = os.path.join(staged, "parent", "metrics.jsonl")
  before = open(log).read()
  assert [json.loads(x)["step"] for x in before.splitlines()] == [1, 2, 3]

  def no_parent_stage(*args, **kwargs):
    raise AssertionError("parent stage entered on resume")

  monkeypatch.setattr(osvos_method, "train", no_parent_stage)
  eosvos.train(config, staged)
  assert open(log).read() == before
  assert _max_gap(read_meta(staged), meta) == 0
  # Nor is meta.init_from read when the state is restored.
  config.meta.init_from = str(tmp_path / "no_such_checkpoint")
  assert eosvos.starting_params(config, staged, model.params) is model.params

  # The parent checkpoint given explicitly: no parent stage, its parameters.
  config.meta.init_from = parent_ckpt
  given = str(tmp_path / "given")
  start = eosvos.starting_params(config, given, model.params)
  assert not os.path.exists(os.path.join(given, "parent"))
  assert _max_gap(start, parent) == 0
