"""Two-shot training depends only on the memory-network interface: a toy
network with a different parameter tree trains and pseudo-labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import twoshot as twoshot_config
from metavos.data import clips, davis, labels, sampling
from _toy_memory import ToyFns, toy_params
from metavos.memory import clip_augment, propagate, pseudo_labels
from metavos.methods import memory_networks, twoshot
from metavos.runtime import checkpoint, metric_writer, sharding


pytestmark = pytest.mark.usefixtures("fast_compile")


def test_phase1_teacher_update_with_another_network(synthetic_root):
  config = twoshot_config.get_config("smoke")
  # An untrained toy is rarely 0.9 confident: a lower threshold makes the
  # teacher's targets (and so the gradient) non-empty.
  config.twoshot.teacher_threshold = 0.5
  videos = sampling.prepare(
      davis.DavisDataset(synthetic_root, split="train"), (48, 64))
  label_set = labels.random_label_set(videos, 2, 0)
  sampler = clips.ClipSampler(videos, 3, 2, 2, 0, label_set, True)
  mesh = sharding.make_mesh()
  fns, params = ToyFns(), toy_params()
  update = twoshot.make_update(config, twoshot.make_losses(config, fns)[
      "teacher"], mesh, 0.5, ema=True)
  state = twoshot.init_state(params, memory_networks.make_optimizer(config), mesh, True)
  state, m0 = update(state, sharding.shard_batch(sampler.sample(0, 2), mesh),
                     jax.random.key(0))
  # Step 0: alpha 0, the teacher is the updated student.
  for t, s in zip(jax.tree.leaves(state["teacher"]),
                  jax.tree.leaves(state["params"])):
    np.testing.assert_array_equal(t, s)
  before = jax.device_get(state["teacher"])
  state, m1 = update(state, sharding.shard_batch(sampler.sample(1, 2), mesh),
                     jax.random.key(1))
  assert int(state["step"]) == 2 and float(m1["ema_alpha"]) == 0.5
  for t, old, s in zip(jax.tree.leaves(state["teacher"]),
                       jax.tree.leaves(before),
                       jax.tree.leaves(state["params"])):
    np.testing.assert_allclose(t, 0.5 * old + 0.5 * np.asarray(s), rtol=1e-6)
  assert all(np.isfinite(float(m[k])) for m in (m0, m1)
             for k in ("loss", "confident_fraction", "grad_norm"))
  assert float(m0["grad_norm"]) > 0 and float(m0["confident_fraction"]) > 0
  moved = max(float(jnp.abs(a - b).max()) for a, b in zip(
      jax.tree.leaves(state["params"]), jax.tree.leaves(params)))
  assert moved > 0


def test_pseudo_labels_with_another_network(synthetic_root):
  video = davis.DavisDataset(synthetic_root, split="train").load(
      "synthetic-000")
  seg = propagate.MemorySegmenter(ToyFns(), toy_params(),
                                  propagate.PropagateConfig(2, 3, None))
  pred = pseudo_labels.pseudo_label_video(seg, video, [1, 4])
  assert pred.shape == video.masks.shape and pred.dtype == np.uint8
  for t in (1, 4):  # labelled frames keep their real masks
    np.testing.assert_array_equal(pred[t], video.masks[t])
  assert set(np.unique(pred)) <= {0, *video.object_ids}


@pytest.mark.parametrize("anchor_pairs", [0, 2])
def test_phase1_runs_warmup_then_teacher_with_another_network(
    synthetic_root, tmp_path, anchor_pairs):
  config = twoshot_config.get_config("smoke")  # warm-up 1 of 3 steps
  config.data.root = str(synthetic_root)
  config.twoshot.teacher_threshold = 0.5
  config.twoshot.anchor_pairs = anchor_pairs
  build = lambda c: (ToyFns(), toy_params())
  state = twoshot.phase1(config, str(tmp_path), build)
  lines = metric_writer.read_metrics(tmp_path / "phase1" / "metrics.jsonl")
  assert [x["step"] for x in lines] == [1, 2, 3]
  # Step 1 is a warm-up step (labelled pairs, no teacher targets).
  assert "confident_fraction" not in lines[0]
  assert all("confident_fraction" in x for x in lines[1:])
  # Labelled pairs beside the teacher's clips: their loss is logged.
  assert "pair_loss" not in lines[0]
  assert all(("pair_loss" in x) == bool(anchor_pairs) for x in lines[1:])
  assert int(state["step"]) == 3
  # The toy's parameter tree, student and teacher, is what was saved.
  saved = checkpoint.restore_subtree(tmp_path / "phase1" / "checkpoints",
                                     "teacher", toy_params())
  for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(state["teacher"])):
    np.testing.assert_array_equal(a, b)
  # Resumed: nothing left to do, the same state.
  again = twoshot.phase1(config, str(tmp_path), build)
  assert int(again["step"]) == 3


def test_clip_augmentation_reaches_the_two_shot_step(synthetic_root):
  """With `clip.augment` on, the step trains on the batch augmented with
  its own key: the same loss as the plain step on that augmented batch."""
  config = twoshot_config.get_config("smoke")
  config.twoshot.teacher_threshold = 0.5
  videos = sampling.prepare(
      davis.DavisDataset(synthetic_root, split="train"), (48, 64))
  sampler = clips.ClipSampler(videos, 3, 2, 2, 0,
                              labels.random_label_set(videos, 2, 0), True)
  batch, key = sampler.sample(0, 2), jax.random.key(5)
  mesh = sharding.make_mesh()
  fns, params = ToyFns(), toy_params()

  def loss_of(cfg, b):
    update = twoshot.make_update(cfg, twoshot.make_losses(cfg, fns)[
        "teacher"], mesh, 0.5, ema=True)
    state = twoshot.init_state(params, memory_networks.make_optimizer(cfg), mesh, True)
    _, metrics = update(state, sharding.shard_batch(b, mesh), key)
    return float(metrics["loss"])

  augmented = config.copy_and_resolve_references()
  augmented.clip.augment.enabled = True
  aug = clip_augment.from_clip_config(augmented.clip)
  by_hand = jax.device_get(clip_augment.augment_batch(key, batch, aug))
  on, off = loss_of(augmented, batch), loss_of(config, batch)
  assert on == pytest.approx(loss_of(config, by_hand), rel=1e-5)
  assert abs(on - off) > 1e-4  # the augmentation changed what was trained on


def test_labelled_pairs_keep_real_labels_in_the_teacher_step(synthetic_root):
  """With `twoshot.anchor_pairs`, the step after the warm-up adds the
  warm-up loss of labelled pairs to the teacher's: even where the teacher
  is never confident enough to supervise, the real labels still train."""
  config = twoshot_config.get_config("smoke")
  config.twoshot.teacher_threshold = 1.01  # No teacher target anywhere.
  videos = sampling.prepare(
      davis.DavisDataset(synthetic_root, split="train"), (48, 64))
  # Labelled frames far apart: no clip (3 frames, gaps <= 2) reaches a
  # second labelled frame, so the clips' frames 1.. have no real label.
  label_set = {v.name: [0, len(v.annotated) - 1] for v in videos}
  assert min(len(v.annotated) for v in videos) > 5
  config.clip.length, config.clip.max_gap = 3, 2
  mesh = sharding.make_mesh()
  fns, params = ToyFns(), toy_params()

  def step(cfg, batch):
    update = twoshot.make_update(cfg, twoshot.make_losses(cfg, fns)[
        "teacher"], mesh, 0.5, ema=True)
    state = twoshot.init_state(params, memory_networks.make_optimizer(cfg),
                               mesh, True)
    return update(state, sharding.shard_batch(batch, mesh),
                  jax.random.key(3))[1]

  plain_batch = twoshot.teacher_sampler(config, videos, label_set).sample(0, 2)
  plain = step(config, plain_batch)
  assert float(plain["grad_norm"]) == 0  # the teacher alone teaches nothing
  anchored = config.copy_and_resolve_references()
  anchored.twoshot.anchor_pairs = 2
  sampler = twoshot.teacher_sampler(anchored, videos, label_set)
  # The pairs draw from their own random stream, not the clips'.
  assert sampler.pairs.seed != sampler.clips.seed
  batch = sampler.sample(0, 2)
  for k, v in plain_batch.items():  # the same clips, pairs added
    np.testing.assert_array_equal(batch["clips"][k], v, err_msg=k)
  m = step(anchored, batch)
  assert float(m["grad_norm"]) > 0 and float(m["pair_loss"]) > 0
  assert float(m["teacher_loss"]) == pytest.approx(float(plain["loss"]))
  assert float(m["loss"]) == pytest.approx(
      float(m["teacher_loss"]) + float(m["pair_loss"]), rel=1e-6)
  # The warm-up step's loss on the same pairs is the pair term.
  warm = twoshot.make_update(config, twoshot.make_losses(config, fns)[
      "warmup"], mesh, 0.5, ema=True)
  state = twoshot.init_state(params, memory_networks.make_optimizer(config),
                             mesh, True)
  _, w = warm(state, sharding.shard_batch(batch["pairs"], mesh),
              jax.random.key(3))
  assert float(m["pair_loss"]) == pytest.approx(float(w["loss"]), rel=1e-5)


def test_labelled_pairs_are_augmented_apart_from_the_clips(synthetic_root):
  config = twoshot_config.get_config("smoke")
  config.clip.augment.enabled = True
  config.twoshot.anchor_pairs = 2
  videos = sampling.prepare(
      davis.DavisDataset(synthetic_root, split="train"), (48, 64))
  batch = twoshot.teacher_sampler(
      config, videos, labels.random_label_set(videos, 2, 0)).sample(0, 2)
  aug, key = clip_augment.from_clip_config(config.clip), jax.random.key(7)
  got = jax.device_get(twoshot.augment(key, batch, aug))
  assert got.keys() == {"clips", "pairs"}
  for name in got:
    by_hand = clip_augment.augment_batch(
        jax.random.fold_in(key, sorted(got).index(name)), batch[name], aug)
    np.testing.assert_allclose(got[name]["frames"], by_hand["frames"])
    assert np.abs(got[name]["frames"] - batch[name]["frames"]).max() > 1e-3
