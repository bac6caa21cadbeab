"""Tests for metavos.memory.clip_augment: clip-level and per-frame warps of
training clips, the same warp for frames, masks and valid maps."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from _toy_memory import ToyFns, toy_params
from configs import stcn as stcn_config
from metavos.data import clips, davis, sampling
from metavos.memory import clip_augment
from metavos.methods import memory_networks, stcn, train_loop
from metavos.runtime import sharding

pytestmark = pytest.mark.usefixtures("fast_compile")

OFF = clip_augment.ClipAugmentConfig(
    scale_range=(1.0, 1.0), max_rotation_deg=0.0, max_shift=0.0,
    frame_scale=0.0, frame_rotation_deg=0.0, frame_shift=0.0, brightness=0.0,
    contrast=0.0, saturation=0.0)
NO_COLOUR = dataclasses.replace(clip_augment.ClipAugmentConfig(),
                                brightness=0.0, contrast=0.0, saturation=0.0)
augment_batch = jax.jit(clip_augment.augment_batch, static_argnums=2)


def _batch(clips=2, frames=3, objects=2, height=24, width=32, same=False):
  """Frames that are their masks painted in colours, so a shared warp keeps
  frame and mask in register; valid False on a void patch."""
  rng = np.random.default_rng(0)
  ys, xs = np.mgrid[:height, :width]
  masks = np.zeros((clips, frames, objects, height, width), np.float32)
  for b in range(clips):
    for t in range(frames):
      for k in range(objects):
        cy, cx = rng.uniform(6, height - 6), rng.uniform(6, width - 6)
        masks[b, t, k] = ((ys - cy) ** 2 + (xs - cx) ** 2) < 25
      if same:
        masks[b, t] = masks[b, 0]
  masks[:, :, 1] *= 1 - masks[:, :, 0]  # One-hot: object 0 on top.
  colours = np.array([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1]], np.float32)
  frames_ = 0.05 + np.einsum("btkhw,kc->bthwc", masks, colours)
  valid = np.ones((clips, frames, height, width), bool)
  valid[:, :, :3, :3] = False
  return {"frames": jnp.asarray(frames_), "masks": jnp.asarray(masks),
          "valid": jnp.asarray(valid), "present": jnp.ones((clips, objects),
                                                           bool)}


def test_all_off_is_the_identity():
  batch = _batch()
  out = augment_batch(jax.random.key(0), batch, OFF)
  np.testing.assert_allclose(out["frames"], batch["frames"], atol=1e-6)
  np.testing.assert_array_equal(out["masks"], batch["masks"])
  np.testing.assert_array_equal(out["valid"], batch["valid"])
  np.testing.assert_array_equal(out["present"], batch["present"])


def test_frames_masks_and_valid_share_one_warp():
  batch = _batch()
  out = augment_batch(jax.random.key(1), batch, NO_COLOUR)
  frames, masks, valid = map(np.asarray, (out["frames"], out["masks"],
                                          out["valid"]))
  assert frames.shape == batch["frames"].shape
  assert masks.shape == batch["masks"].shape and masks.dtype == np.float32
  assert set(np.unique(masks)) <= {0.0, 1.0}
  assert (masks.sum(2) <= 1).all()  # Still one-hot.
  # The warp moved things...
  assert np.abs(masks - np.asarray(batch["masks"])).sum() > 50
  # ...and the red channel still marks object 0 (bilinear frames vs nearest
  # masks disagree on boundary pixels only).
  agree = ((frames[..., 0] > 0.5) == (masks[:, :, 0] > 0.5))[valid]
  assert agree.mean() > 0.95
  # Pixels whose source is outside the frame are black, invalid and empty.
  all_valid = {**batch, "valid": jnp.ones_like(batch["valid"])}
  out = augment_batch(jax.random.key(1), all_valid, NO_COLOUR)
  outside = ~np.asarray(out["valid"])
  assert outside.any()
  assert (np.asarray(out["frames"])[outside] == 0).all()
  assert (np.asarray(out["masks"]).sum(2)[outside] == 0).all()
  # The same warp with the void patch: invalid wherever the all-valid warp
  # is, and also where the void patch landed inside the frame.
  assert not (valid & outside).any()
  assert (~valid & ~outside).any()


def test_clip_level_warp_is_shared_and_frame_level_adds_motion():
  batch = _batch(same=True)  # Every frame of a clip is the same picture.
  clip_only = dataclasses.replace(NO_COLOUR, frame_scale=0.0,
                                  frame_rotation_deg=0.0, frame_shift=0.0)
  out = augment_batch(jax.random.key(2), batch, clip_only)
  for t in range(1, 3):
    np.testing.assert_array_equal(out["masks"][:, t], out["masks"][:, 0])
    np.testing.assert_allclose(out["frames"][:, t], out["frames"][:, 0],
                               atol=1e-6)
  # Clips are drawn independently, and the warp is not the identity.
  assert np.abs(out["masks"] - batch["masks"]).sum() > 50
  out = augment_batch(jax.random.key(2), batch, NO_COLOUR)
  assert np.abs(out["masks"][:, 1] - out["masks"][:, 0]).sum() > 0


def test_same_key_same_clips_other_key_other_clips():
  batch = _batch()
  cfg = clip_augment.ClipAugmentConfig()
  a = augment_batch(jax.random.key(3), batch, cfg)
  b = augment_batch(jax.random.key(3), batch, cfg)
  c = augment_batch(jax.random.key(4), batch, cfg)
  np.testing.assert_array_equal(a["frames"], b["frames"])
  assert not np.array_equal(np.asarray(a["frames"]), np.asarray(c["frames"]))
  assert 0.0 <= float(a["frames"].min()) and float(a["frames"].max()) <= 1.0


def test_config_block_switches_it_on_and_bad_ranges_raise():
  clip = stcn_config.clip_config()
  assert clip_augment.from_clip_config(clip) is None  # Off by default.
  assert clip_augment.from_clip_config(ml_collections.ConfigDict()) is None
  clip.augment.enabled = True
  cfg = clip_augment.from_clip_config(clip)
  assert cfg == clip_augment.ClipAugmentConfig()  # Defaults agree.
  with pytest.raises(ValueError, match="scale_range"):
    clip_augment.ClipAugmentConfig(scale_range=(1.2, 1.0))
  with pytest.raises(ValueError, match="max_shift"):
    clip_augment.ClipAugmentConfig(max_shift=-0.1)


def test_static_batch_repeats_each_clips_first_frame():
  batch = _batch()  # Every frame of a clip differs.
  batch["labelled"] = jnp.array([[True, False, False]] * 2)
  out = clip_augment.static_batch(batch)
  for key in ("frames", "masks", "valid", "labelled"):
    assert out[key].shape == batch[key].shape
    for t in range(3):
      np.testing.assert_array_equal(out[key][:, t], batch[key][:, 0])
  np.testing.assert_array_equal(out["present"], batch["present"])
  assert not np.array_equal(batch["masks"][:, 1], batch["masks"][:, 0])


def test_static_frames_reach_the_stcn_step(synthetic_root):
  """clip.static_frames: the step trains on the batch made static and then
  augmented with the step key, i.e. the same loss as the augmented step on
  `static_batch` of it."""
  config = stcn_config.get_config("smoke")
  config.clip.augment.enabled = True
  videos = sampling.prepare(
      davis.DavisDataset(synthetic_root, split="train"), (48, 64))
  batch = clips.ClipSampler(videos, 3, 2, 2, 0).sample(0, 2)
  mesh, key = sharding.make_mesh(), jax.random.key(5)
  fns, params = ToyFns(), toy_params()

  def loss_of(cfg, b):
    update = stcn.make_update(cfg, fns, mesh, 1.0)
    state = train_loop.initial_state(params, memory_networks.make_optimizer(cfg), mesh)
    return float(update(state, sharding.shard_batch(b, mesh), key)[1]["loss"])

  static = config.copy_and_resolve_references()
  static.clip.static_frames = True
  by_hand = jax.device_get(clip_augment.static_batch(batch))
  on = loss_of(static, batch)
  assert on == pytest.approx(loss_of(config, by_hand), rel=1e-5)
  assert abs(on - loss_of(config, batch)) > 1e-4  # the clips did change


def test_static_frames_without_augmentation_raise():
  config = stcn_config.get_config("smoke")
  config.clip.static_frames = True
  with pytest.raises(ValueError, match="clip.augment.enabled"):
    stcn.make_update(config, None, None, 1.0)
