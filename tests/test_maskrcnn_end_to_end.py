"""configs/eosvos.py:smoke,model=maskrcnn end to end: meta-train, then evaluate."""

import json
import os

import jax
import numpy as np
import pytest

from configs import eosvos as eosvos_config
from metavos import train
from metavos.methods import eosvos, setup
from metavos.runtime import checkpoint


pytestmark = pytest.mark.usefixtures("fast_compile")


def test_maskrcnn_smoke_trains_and_evaluates(tmp_path):
  config = eosvos_config.get_config("smoke,model=maskrcnn")
  assert config.model.name == "maskrcnn"
  workdir = str(tmp_path)
  metrics = train.train_and_evaluate(config, workdir)
  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  assert [x["step"] for x in lines] == [1, 2, 3]
  assert all(np.isfinite(x["loss"]) for x in lines)
  seqs = [d.name for d in os.scandir(os.path.join(workdir, "results"))
          if d.is_dir()]
  assert seqs and len(os.listdir(os.path.join(workdir, "results",
                                              seqs[0]))) == 6
  with open(os.path.join(workdir, "timing.json")) as f:
    assert json.load(f)["median_fps"] > 0
  # The meta-learned init and neuron-level rates of the detector moved.
  model = setup.build_model(config, config.seed)
  abstract = eosvos.initial_meta_params(config, model.params)
  learned = checkpoint.restore_subtree(os.path.join(workdir, "checkpoints"),
                                       "meta_params", abstract)
  moved = lambda a, b: max(float(np.abs(x - y).max()) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))
  assert moved(learned["init"], abstract["init"]) > 0
  # Every head's neuron-level rates got a meta-gradient: the query loss
  # reaches the RPN, the box head and the mask head through the inner loop.
  for head in ("rpn", "box_head", "mask_head", "backbone"):
    assert moved(learned["lrs"][head], abstract["lrs"][head]) > 0, head
  # A neuron rate of shape (..., out) matches its parameter's last axis.
  for p, r in zip(jax.tree.leaves(abstract["init"]),
                  jax.tree.leaves(abstract["lrs"])):
    assert r.shape == (1,) * (p.ndim - 1) + (p.shape[-1],)
