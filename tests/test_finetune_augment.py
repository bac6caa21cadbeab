"""Tests for metavos.finetune.augment: exact warps, randomness, transforms."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.finetune import augment as aug

IDENTITY = aug.AffineParams(flip=jnp.asarray(False), scale=jnp.asarray(1.0),
                            angle_deg=jnp.asarray(0.0))
OFF = dict(flip=False, scale_range=(1.0, 1.0), max_rotation_deg=0.0)

warp = jax.jit(aug.warp)


pytestmark = pytest.mark.usefixtures("fast_compile")


def _params(flip=False, scale=1.0, angle=0.0):
  return aug.AffineParams(flip=jnp.asarray(flip), scale=jnp.asarray(scale),
                          angle_deg=jnp.asarray(angle))


def _frame(height=12, width=16, seed=0):
  rng = np.random.default_rng(seed)
  image = rng.standard_normal((height, width, 3)).astype(np.float32)
  mask = (rng.random((height, width)) < 0.4).astype(np.int32)
  return image, mask


def _disc(height, width, radius):
  ys, xs = np.mgrid[:height, :width]
  return (((ys - (height - 1) / 2) ** 2 + (xs - (width - 1) / 2) ** 2)
          <= radius ** 2).astype(np.float32)


def test_identity_returns_input_exactly():
  image, mask = _frame()
  valid = np.ones(mask.shape, bool)
  valid[3, 4] = False
  out_image, out_mask, out_valid = warp(image, mask, valid, IDENTITY)
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_mask, mask)
  np.testing.assert_array_equal(out_valid, valid)
  # augment with every part turned off is the identity too.
  out_image, out_mask, out_valid = jax.jit(
      lambda k: aug.augment(k, image, mask, **OFF))(jax.random.key(0))
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_mask, mask)
  assert out_valid.all()


def test_shift_translates_by_whole_pixels():
  image, mask = _frame(11, 15)
  out_image, out_mask, out_valid = jax.jit(aug.warp)(
      image, mask, None, IDENTITY, (jnp.float32(2.0), jnp.float32(-3.0)))
  # Output pixel (y, x) reads source (y - 2, x + 3).
  np.testing.assert_allclose(out_image[2:, :-3], image[:-2, 3:], atol=1e-5)
  np.testing.assert_array_equal(out_mask[2:, :-3], mask[:-2, 3:])
  expected_valid = np.zeros(mask.shape, bool)
  expected_valid[2:, :-3] = True
  np.testing.assert_array_equal(out_valid, expected_valid)
  assert (np.asarray(out_image)[~expected_valid] == 0).all()


def test_flip_equals_reversed_columns():
  image, mask = _frame(11, 15)
  out_image, out_mask, out_valid = warp(image, mask, None, _params(flip=True))
  np.testing.assert_array_equal(out_image, image[:, ::-1])
  np.testing.assert_array_equal(out_mask, mask[:, ::-1])
  assert out_valid.all()


def test_plus_90_degrees_is_np_rot90_counter_clockwise():
  image, mask = _frame(10, 10)
  out_image, out_mask, out_valid = warp(image, mask, None, _params(angle=90.0))
  # np.rot90(k=1) turns counter-clockwise on screen: the top-right pixel
  # becomes the top-left one.
  np.testing.assert_allclose(out_image, np.rot90(image), atol=1e-5)
  np.testing.assert_array_equal(out_mask, np.rot90(mask))
  assert out_valid.all()
  np.testing.assert_allclose(out_image[0, 0], image[0, -1], atol=1e-5)


def test_30_degree_rotation_invalidates_corners_only():
  image, mask = _frame(24, 32)
  valid = np.ones(mask.shape, bool)
  out_image, out_mask, out_valid = warp(image, mask, valid, _params(angle=30.))
  out_valid = np.asarray(out_valid)
  assert not out_valid[0, 0] and not out_valid[0, -1]
  assert not out_valid[-1, 0] and not out_valid[-1, -1]
  assert out_valid[8:16, 10:22].all()
  # Pixels from outside the source are 0 in the image and the mask.
  np.testing.assert_array_equal(np.asarray(out_image)[~out_valid], 0.0)
  np.testing.assert_array_equal(np.asarray(out_mask)[~out_valid], 0)


@pytest.mark.parametrize('scale', [0.8, 1.25])
def test_scale_changes_mask_area_by_scale_squared(scale):
  mask = _disc(40, 48, radius=10.0)
  image = np.stack([mask] * 3, axis=-1)
  _, out_mask, out_valid = warp(image, mask, None, _params(scale=scale))
  np.testing.assert_allclose(out_mask.sum() / mask.sum(), scale ** 2,
                             rtol=0.06)
  # Zooming out brings in pixels from outside the frame; zooming in does not.
  assert bool(out_valid.all()) == (scale >= 1.0)


def test_void_input_pixels_follow_the_warp():
  image, mask = _frame(9, 13)
  valid = np.ones(mask.shape, bool)
  valid[2, 3] = False
  _, _, out_valid = warp(image, mask, valid, _params(flip=True))
  np.testing.assert_array_equal(out_valid, valid[:, ::-1])


def test_random_masks_stay_binary_and_keep_shape_and_dtype():
  image, mask = _frame()
  for m in (mask, mask[..., None], mask.astype(np.float32)):
    keys = jax.random.split(jax.random.key(1), 6)
    _, out_mask, out_valid = jax.jit(jax.vmap(
        lambda k, m=m: aug.augment(k, image, m)))(keys)
    assert out_mask.shape == (6,) + m.shape and out_mask.dtype == m.dtype
    assert out_valid.shape == (6,) + mask.shape and out_valid.dtype == bool
    assert set(np.unique(np.asarray(out_mask)).tolist()) <= {0, 1}


def test_same_key_same_output_different_keys_differ():
  image, mask = _frame()
  augment = jax.jit(lambda k: aug.augment(k, image, mask))
  first = augment(jax.random.key(7))
  again = augment(jax.random.key(7))
  other = augment(jax.random.key(8))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], other[0])


def test_vmap_over_keys_equals_loop_and_parameters_are_fresh():
  image, mask = _frame()
  config = aug.AugmentConfig(max_rotation_deg=20.0)
  keys = jax.random.split(jax.random.key(2), 4)
  augment = jax.jit(lambda k: aug.augment(
      k, image, mask, **dataclasses.asdict(config)))
  batched = jax.jit(jax.vmap(augment))(keys)
  for i, key in enumerate(keys):
    for batch_part, single in zip(batched, augment(key)):
      np.testing.assert_allclose(batch_part[i], single, atol=1e-6)
  params = jax.vmap(lambda k: aug.sample_params(k, config))(
      jax.random.split(jax.random.key(3), 64))
  assert 0 < int(params.flip.sum()) < 64
  assert params.scale.min() >= 0.75 and params.scale.max() <= 1.25
  assert np.abs(params.angle_deg).max() <= 20.0
  assert len(np.unique(np.asarray(params.angle_deg))) == 64


def test_runs_inside_scan_with_fold_in():
  image, mask = _frame()

  @jax.jit
  def areas(rng):
    def step(carry, i):
      _, out_mask, out_valid = aug.augment(jax.random.fold_in(rng, i), image,
                                           mask)
      return carry + out_valid.sum(), out_mask.sum()
    return jax.lax.scan(step, 0, jnp.arange(5))

  _, per_step = areas(jax.random.key(4))
  assert len(np.unique(np.asarray(per_step))) > 1


def test_image_gradient_is_the_adjoint_of_the_warp():
  # The warp is linear in the image, so grad_x <w, warp(x)> = A^T w must
  # satisfy <A^T w, v> = <w, warp(v)> for any v.
  image, mask = _frame()
  rng = np.random.default_rng(5)
  weights = rng.standard_normal(image.shape).astype(np.float32)
  probe = rng.standard_normal(image.shape).astype(np.float32)
  params = _params(flip=True, scale=1.1, angle=17.0)
  warped_image = jax.jit(lambda x: aug.warp(x, mask, None, params)[0])
  grad = jax.jit(jax.grad(lambda x: jnp.sum(weights * warped_image(x))))(
      image)
  assert np.abs(grad).sum() > 0
  np.testing.assert_allclose(np.sum(grad * probe),
                             np.sum(weights * warped_image(probe)), rtol=1e-4)


def test_augment_batch_shapes_and_independent_copies():
  image, mask = _frame()
  images, masks = np.stack([image, -image]), np.stack([mask, 1 - mask])
  out_images, out_masks, out_valid = jax.jit(
      aug.augment_batch, static_argnums=3)(jax.random.key(6), images, masks, 3)
  assert out_images.shape == (2, 3) + image.shape
  assert out_masks.shape == (2, 3) + mask.shape
  assert out_valid.shape == (2, 3) + mask.shape
  assert not np.array_equal(out_images[0, 0], out_images[0, 1])
  off = aug.AugmentConfig(**OFF)
  same, _, _ = jax.jit(aug.augment_batch, static_argnums=(3, 5))(
      jax.random.key(6), images, masks, 2, None, off)
  np.testing.assert_array_equal(same[1, 1], -image)


@pytest.mark.parametrize('kwargs', [dict(scale_range=(1.2, 0.8)),
                                    dict(scale_range=(0.0, 1.0)),
                                    dict(max_rotation_deg=-5.0)])
def test_bad_config_raises(kwargs):
  with pytest.raises(ValueError, match='to turn'):
    aug.AugmentConfig(**kwargs)


def test_colour_jitter_changes_colours_only_and_off_keeps_the_warp():
  rng = jax.random.key(3)
  image = jax.random.uniform(jax.random.key(0), (12, 16, 3))
  mask = (image[..., 0] > 0.5).astype(jnp.float32)
  plain = aug.augment(rng, image, mask)
  # Off (all ranges 0): exactly the warp of the same draws as before.
  want = aug.warp(image, mask, None, aug.sample_params(rng, aug.AugmentConfig()))
  for got, ref in zip(plain, want):
    np.testing.assert_array_equal(got, ref)
  coloured = aug.augment(rng, image, mask, brightness=0.2, contrast=0.3,
                         saturation=0.3)
  np.testing.assert_array_equal(coloured[1], plain[1])  # same geometry
  np.testing.assert_array_equal(coloured[2], plain[2])
  assert not np.allclose(coloured[0], plain[0])
  jittered = aug.colour_jitter(rng, image, 0.2, 0.3, 0.3)
  assert float(jittered.min()) >= 0.0 and float(jittered.max()) <= 1.0
  # Saturation alone keeps each pixel's grey level.
  sat = aug.colour_jitter(rng, image, 0.0, 0.0, 0.5)
  np.testing.assert_allclose(sat.mean(-1), jnp.clip(image, 0, 1).mean(-1),
                             atol=1e-6)


def test_meta_query_frames_are_augmented_like_the_support():
  from metavos.meta import meta_step  # pylint: disable=g-import-not-at-top
  from metavos.models import interface  # pylint: disable=g-import-not-at-top
  model = interface.dense_model(
      lambda p, x: (x @ p["w"])[..., None] + p["b"])
  meta_params = {"init": {"w": jnp.asarray([1.0, -2.0, 0.5]),
                          "b": jnp.zeros(())},
                 "lrs": jnp.asarray(0.0)}
  image = jax.random.uniform(jax.random.key(0), (12, 16, 3))
  mask = (image[..., 0] > 0.5).astype(jnp.float32)
  task = {"support_image": image, "support_mask": mask,
          "support_valid": jnp.ones((12, 16), bool),
          "query_image": image[None], "query_mask": mask[None],
          "query_valid": jnp.ones((1, 12, 16), bool)}
  def query_loss(augment, key):
    cfg = meta_step.MetaConfig(num_inner_steps=1, support_copies=1,
                               augment=augment, loss="bce")
    return float(meta_step.task_loss(meta_params, task, jax.random.key(key),
                                     model, cfg)[0])
  # With zero rates the query loss depends on the key only through the
  # query's augmentation.
  assert query_loss(None, 1) == query_loss(None, 2)
  colour = (("brightness", 0.3), ("flip", False), ("max_rotation_deg", 0.0),
            ("scale_range", (1.0, 1.0)))
  assert query_loss(colour, 1) != query_loss(colour, 2)


def test_random_crop_cuts_the_same_window_of_all_three_at_every_position():
  height, width, size = 5, 7, (3, 4)
  ys, xs = np.mgrid[:height, :width]
  image = np.stack([ys, xs, ys * 10 + xs], -1).astype(np.float32)
  mask = (ys * 10 + xs).astype(np.int32)
  valid = (xs % 2 == 0)
  crop = jax.jit(lambda k: aug.random_crop(k, image, mask, valid, size))
  seen = set()
  for key in range(200):
    i, m, v = crop(jax.random.key(key))
    assert i.shape == (3, 4, 3) and m.shape == (3, 4) and v.shape == (3, 4)
    y, x = int(i[0, 0, 0]), int(i[0, 0, 1])
    np.testing.assert_array_equal(i, image[y:y + 3, x:x + 4])
    np.testing.assert_array_equal(m, mask[y:y + 3, x:x + 4])
    np.testing.assert_array_equal(v, valid[y:y + 3, x:x + 4])
    seen.add((y, x))
  # Every one of the (5-3+1) x (7-4+1) positions is drawn.
  assert seen == {(y, x) for y in range(3) for x in range(4)}


def test_random_crop_of_the_whole_frame_is_the_frame_and_too_large_fails():
  image, mask = _frame(6, 8)
  valid = np.ones((6, 8), bool)
  out = aug.random_crop(jax.random.key(0), image, mask, valid, (6, 8))
  for got, want in zip(out, (image, mask, valid)):
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match=r"crop size \(7, 8\) does not fit a "
                     r"6x8 frame"):
    aug.random_crop(jax.random.key(0), image, mask, valid, (7, 8))
