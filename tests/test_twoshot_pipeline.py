"""configs/twoshot.py:smoke end to end (phase 1, pseudo-labels, phase 2,
evaluation) on a copy of the data whose unlabelled training frames have no
mask files; the pseudo-labels are scored against the real masks."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from configs import twoshot as twoshot_config
from metavos import evaluate, train
from metavos.data import clips, davis, labels, sampling
from metavos.methods import memory_networks, twoshot
from metavos.runtime import checkpoint, metric_writer


pytestmark = pytest.mark.usefixtures("fast_compile")


def _sparse_copy(full, sparse, label_set):
  """Copies a DAVIS root, deleting the masks of unlabelled training frames."""
  shutil.copytree(full, sparse)
  for name, frames in label_set.items():
    for png in (sparse / "Annotations" / "480p" / name).glob("*.png"):
      if int(png.stem) not in frames:
        png.unlink()


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_root, fast_compile):
  del fast_compile
  tmp = tmp_path_factory.mktemp("twoshot")
  config = twoshot_config.get_config("smoke")
  full = sampling.prepare(davis.DavisDataset(synthetic_root, split="train"),
                          tuple(config.train.image_size))
  kept = labels.random_label_set(full, 2, config.labels.seed)
  _sparse_copy(synthetic_root, tmp / "sparse", kept)
  config.data.root = str(tmp / "sparse")
  config.twoshot.pseudo_score_root = str(synthetic_root)
  # The warm-up section runs in test_twoshot_interface (toy network); off
  # here, it saves one compilation of the memory network's gradient.
  config.twoshot.warmup_steps = 0
  workdir = str(tmp / "run")
  metrics = train.train_and_evaluate(config, workdir)
  return config, workdir, metrics, full, kept


def test_metrics_labels_and_teacher(run):
  config, workdir, metrics, _, kept = run
  with open(os.path.join(workdir, "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(metrics))
  assert 0.0 <= metrics["global"]["J&F-Mean"] <= 1.0
  assert os.path.isdir(os.path.join(workdir, "results", "synthetic-002"))
  # On the sparse copy the only annotated frames are the labelled ones, so
  # the same 2 frames per video are drawn; 4 of 12 frames are labelled.
  sparse = twoshot._prepare(config, twoshot._train_split(
      config, config.data.root))
  assert labels.load(os.path.join(workdir, "labels.json"), sparse) == kept
  p1 = metric_writer.read_metrics(
      os.path.join(workdir, "phase1", "metrics.jsonl"))
  p2 = metric_writer.read_metrics(
      os.path.join(workdir, "phase2", "metrics.jsonl"))
  assert [x["step"] for x in p1] == [1, 2, 3]
  assert [x["step"] for x in p2] == [1, 2]
  assert [x["ema_alpha"] for x in p1] == pytest.approx([0, 0.5, 2 / 3])
  assert p2[0]["confident_fraction"] == 0.0  # before self_label_step
  for x in p1 + p2:
    assert np.isfinite(x["loss"]) and 0 <= x["confident_fraction"] <= 1
    assert x["labelled_fraction"] == pytest.approx(4 / 12)
  # The EMA teacher is checkpointed beside the student, and differs.
  _, init = memory_networks.build_network(config)
  ckpt = os.path.join(workdir, "phase1", "checkpoints")
  t, s = (checkpoint.restore_subtree(ckpt, k, init)
          for k in ("teacher", "params"))
  assert max(float(np.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(t), jax.tree.leaves(s))) > 0


def test_missing_masks_change_no_batch(run):
  # Unlabelled frames need no mask files: phase-1 clips from the sparse
  # copy equal those from the full data under the same label set.
  config, _, _, full, kept = run
  sparse = twoshot._prepare(config, twoshot._train_split(
      config, config.data.root))
  c = config.clip
  make = lambda videos: clips.ClipSampler(videos, c.length, c.max_gap,
                                          c.max_objects, 0, kept, c.flip)
  a, b = make(sparse), make(full)
  assert a.starts == b.starts
  for step in range(4):
    x, y = a.sample(step, 4), b.sample(step, 4)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)
  assert not all(v.annotated.all() for v in sparse)


def test_pseudo_labels_are_a_scored_davis_root(run, synthetic_root):
  config, workdir, _, _, kept = run
  root = os.path.join(workdir, "pseudo_labels")
  ds = davis.DavisDataset(root, 2017, "train", "480p", allow_new_objects=True)
  real = davis.DavisDataset(synthetic_root, split="train")
  assert ds.sequences == real.sequences
  for name in ds.sequences:
    pl, gt = ds.load(name), real.load(name)
    assert pl.annotated.all()
    np.testing.assert_array_equal(pl.frames, gt.frames)
    for t in kept[name]:  # labelled frames keep their real masks
      np.testing.assert_array_equal(pl.masks[t], gt.masks[t])
  with open(os.path.join(workdir, twoshot.PSEUDO_METRICS)) as f:
    scored = json.load(f)
  # The official scorer on the written PNGs against the real masks gives
  # the in-run pseudo-label J&F.
  again = evaluate.evaluate_results_dir(
      os.path.join(root, "Annotations", "480p"), synthetic_root, 2017,
      "train", "480p")
  assert again["global"]["J&F-Mean"] == pytest.approx(
      scored["global"]["J&F-Mean"], abs=1e-9)
  assert set(scored["per_object"]) == {
      f"{n}_{o}" for n in kept for o in real.load(n).object_ids}
