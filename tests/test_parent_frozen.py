"""OSVOS' parent network with its first backbone stages frozen
(parent.frozen_stages): those parameters keep their pretrained values (no
gradient, no Adam step, no weight decay), and every other parameter takes
exactly the step it takes when the whole network trains. And the parent
trained on random windows of its frames (parent.crop_size)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import eosvos as eosvos_config
from configs import osvos as osvos_config
from metavos.methods import osvos, setup, train_loop
from metavos.runtime import sharding

pytestmark = pytest.mark.usefixtures("fast_compile")


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _two_steps(config, model, mesh):
  """The parent's first two updates from the initial parameters (the
  head's logit layers start at zero, so the first step sends no gradient
  into the backbone)."""
  frozen = osvos.frozen_mask(config, model)
  state = train_loop.initial_state(
      model.params, osvos.make_optimizer(config, frozen), mesh)
  r = np.random.default_rng(0)
  h, w = config.train.image_size
  batch = {"image": r.random((2, h, w, 3), np.float32),
           "mask": (r.random((2, h, w)) > 0.7).astype(np.float32),
           "valid": np.ones((2, h, w), bool)}
  update = osvos.make_update(config, model, mesh)
  for step in range(2):
    state, metrics = update(state, batch, jax.random.key(step))
  return _flat(state["params"]), metrics


def test_frozen_stages_stay_and_the_rest_steps_as_in_full_training():
  config = osvos_config.get_config("smoke")
  model = setup.build_model(config, 0)
  mesh = sharding.make_mesh(1)
  before = _flat(model.params)
  full, full_metrics = _two_steps(config, model, mesh)
  config.parent.frozen_stages = 2
  part, part_metrics = _two_steps(config, model, mesh)
  flags = _flat(osvos.frozen_mask(config, model))
  assert 0 < sum(flags.values()) < len(flags)
  # The loss does not depend on what is frozen; the gradient norm only
  # counts the trained layers.
  np.testing.assert_allclose(part_metrics["loss"], full_metrics["loss"],
                             rtol=1e-6)
  assert part_metrics["grad_norm"] < full_metrics["grad_norm"]
  moved_in_full = 0
  for path, is_frozen in flags.items():
    if is_frozen:
      np.testing.assert_array_equal(part[path], before[path], err_msg=path)
      moved_in_full += not np.array_equal(full[path], before[path])
    else:
      np.testing.assert_allclose(part[path], full[path], rtol=1e-5,
                                 atol=1e-7, err_msg=path)
  # Full training does move those stages (some residual branches start
  # with a zero norm scale, so not every one of their parameters).
  assert moved_in_full > 0


def test_bad_parent_frozen_stages_fail_naming_the_field():
  config = osvos_config.get_config("smoke")
  model = setup.build_model(config, 0)
  config.parent.frozen_stages = 9
  with pytest.raises(ValueError, match=r"config.parent.frozen_stages: "
                     r"frozen_stages=9: the backbone has 4 stages"):
    osvos.make_update(config, model, sharding.make_mesh(1))
  config = eosvos_config.get_config("smoke,model=maskrcnn")
  config.parent.frozen_stages = 1
  model = setup.build_model(config, 0)
  with pytest.raises(ValueError, match=r"config.parent.frozen_stages=1 needs "
                     r"a dense model .* set --config.parent.frozen_stages=0"):
    osvos.frozen_mask(config, model)


def test_parent_crops_train_on_windows_of_the_frames():
  config = osvos_config.get_config("smoke")  # Training frames 48x64.
  model = setup.build_model(config, 0)
  mesh = sharding.make_mesh(1)
  whole, whole_metrics = _two_steps(config, model, mesh)
  # A window the size of the frame is the frame: the same steps exactly.
  config.parent.crop_size = (48, 64)
  same, same_metrics = _two_steps(config, model, mesh)
  for path in whole:
    np.testing.assert_array_equal(same[path], whole[path], err_msg=path)
  assert same_metrics["loss"] == whole_metrics["loss"]
  # A smaller window: the network sees part of each frame, another loss.
  config.parent.crop_size = (32, 48)
  _, cropped_metrics = _two_steps(config, model, mesh)
  assert np.isfinite(cropped_metrics["loss"])
  assert cropped_metrics["loss"] != whole_metrics["loss"]


def test_parent_batch_windows_follow_the_augmentation():
  r = np.random.default_rng(1)
  batch = {"image": r.random((3, 12, 16, 3), np.float32),
           "mask": (r.random((3, 12, 16)) > 0.5).astype(np.float32),
           "valid": np.ones((3, 12, 16), bool)}
  augment = {"flip": True, "scale_range": (0.8, 1.2),
             "max_rotation_deg": 20.0}
  key = jax.random.key(4)
  warped = osvos.augment_parent_batch(batch, key, augment)
  cut = osvos.augment_parent_batch(batch, key, augment, (8, 10))
  assert cut["image"].shape == (3, 8, 10, 3)
  assert cut["mask"].shape == cut["valid"].shape == (3, 8, 10)
  # Each frame's window is a window of that frame's augmented view (the
  # warp's draws do not change when a crop follows).
  for n in range(3):
    hits = [(y, x) for y in range(5) for x in range(7)
            if np.array_equal(cut["image"][n],
                              warped["image"][n, y:y + 8, x:x + 10])]
    assert len(hits) == 1
    (y, x), = hits
    np.testing.assert_array_equal(cut["mask"][n],
                                  warped["mask"][n, y:y + 8, x:x + 10])
    np.testing.assert_array_equal(cut["valid"][n],
                                  warped["valid"][n, y:y + 8, x:x + 10])
  assert osvos.augment_parent_batch(batch, key, None) is batch
