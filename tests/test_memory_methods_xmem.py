"""Every memory-network method trains and evaluates the XMem-style network
from `memory.network=xmem` alone: one-shot, and two-shot (its supervised
warm-up step, the teacher phase, the pseudo-labels, phase 2) on the smoke
presets. The STCN-like network runs the same methods in
test_memory_end_to_end, test_oneshot_end_to_end and test_twoshot_pipeline;
nothing in the training code names a network.

One-shot runs its default backward leg here; the other two (t_step,
two_step) feed the same `chain.run_chain` other frame orders and are run
with this network by hand (--config.oneshot.variant), not in the suite:
each would add ~25 s of compilation."""

import importlib
import json
import os

import jax
import numpy as np
import pytest

from metavos import train
from metavos.memory import xmem
from metavos.methods import memory_networks, registry

pytestmark = pytest.mark.usefixtures("fast_compile")

XMEM_ONLY = ("sensory_from_decoder", "sensory_from_value", "shrink_proj",
             "select_proj")


# Supervised STCN training is two-shot's warm-up section (the same
# `chain.supervised_clip_loss` update), run here in the two-shot case: a
# separate STCN case would cost ~40 s of compilation for nothing new.
@pytest.mark.parametrize("method", ["oneshot", "twoshot"])
def test_memory_method_trains_xmem_network(tmp_path, method):
  config = importlib.import_module(f"configs.{method}").get_config(
      "smoke,network=xmem")
  assert config.memory.network == "xmem"
  config.data.max_eval_videos = 1
  if method == "oneshot":
    config.oneshot.static_pretrain_steps = 0
  if method == "twoshot":
    assert config.twoshot.warmup_steps == 1  # the supervised STCN step
  workdir = str(tmp_path / "run")
  metrics = train.train_and_evaluate(config, workdir)
  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  log = os.path.join(workdir, "phase2" if method == "twoshot" else "",
                     "metrics.jsonl")
  lines = [json.loads(x) for x in open(log)]
  assert lines and all(np.isfinite(x["loss"]) and x["grad_norm"] > 0
                       for x in lines)
  # What was trained and evaluated is the XMem-style network: its
  # checkpoint holds the sensory memory's and the key shrinkage's weights.
  # Every one of them was trained: gradients reach the key shrinkage and
  # selection and both GRUs of the sensory memory.
  fns, init = memory_networks.build_network(config)
  assert isinstance(fns, xmem.XMemFns)
  params, _ = memory_networks.restore(
      config, registry.trained_checkpoint(config, workdir))
  for name in XMEM_ONLY:
    moved = max(float(np.abs(a - b).max()) for a, b in zip(
        jax.tree.leaves(params[name]), jax.tree.leaves(init[name])))
    assert moved > 0, name
  if method == "twoshot":
    assert os.listdir(os.path.join(workdir, "pseudo_labels"))
