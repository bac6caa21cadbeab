"""Mask R-CNN as a whole: fitting one frame, the interface, meta-gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from metavos import models
from metavos.finetune import losses
from metavos.models.maskrcnn import boxes as boxes_lib
from metavos.models.maskrcnn import vos as vos_lib


pytestmark = pytest.mark.usefixtures("fast_compile")


# Adam on one frame (the test is of the model, not of the inner loop's SGD).
STEP_SIZE, NUM_STEPS = 6e-3, 100  # measured J 0.95 (0.8 needed)


def tiny_config():
  """A detector small enough to compile and train in seconds on a CPU."""
  config = models.default_model_config()
  config.name, config.backbone = "maskrcnn", "tiny"
  config.fpn_dim, config.norm_groups = 16, 4
  d = config.maskrcnn
  d.anchor_scales, d.anchor_ratios = (4.0,), (0.5, 1.0, 2.0)
  d.pre_nms_topk, d.num_proposals, d.num_propagated = 32, 8, 4
  d.head_dim, d.mask_convs = 32, 1
  return config


def _build(config):
  graphdef, params = models.split_params(
      models.build_model(config, nnx.Rngs(0)))
  return graphdef, params, models.make_vos_model(config, graphdef)


def _ellipse_frame(height=48, width=64):
  yy, xx = np.mgrid[:height, :width]
  mask = (((yy - 22) / 11.0) ** 2 + ((xx - 30) / 15.0) ** 2 < 1).astype(
      np.float32)
  rng = np.random.default_rng(0)
  image = np.where(mask[..., None], [0.9, 0.3, 0.2], [0.2, 0.5, 0.7])
  image = np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1)
  return image.astype(np.float32), mask


@pytest.fixture(scope="module")
def detector():
  """(graphdef, params, vos, jitted value_and_grad of the loss), built and
  compiled once for the tests of this module."""
  graphdef, params, vos = _build(tiny_config())
  loss_fn = vos.make_loss(losses.get_loss("lovasz_hinge"))
  return graphdef, params, vos, jax.jit(jax.value_and_grad(loss_fn))


def test_fine_tuning_on_one_frame_segments_it(detector):
  """Fitting one frame through the model's own loss, then segmenting it
  through tracking + paste, must give J > 0.8. A filled box scores
  pi / 4 = 0.785 here, so the mask head has to learn the ellipse."""
  image, mask = _ellipse_frame()
  _, params, vos, value_and_grad = detector
  batch = (image[None], mask[None], np.ones((1,) + mask.shape, bool))
  tx = optax.adam(STEP_SIZE)
  opt_state, history = tx.init(params), []
  update = jax.jit(tx.update)
  for t in range(NUM_STEPS):
    loss, grads = value_and_grad(params, *batch, jax.random.key(t))
    updates, opt_state = update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    history.append(float(loss))
  probs, box = jax.jit(vos.predict)(params, vos.init_state(jnp.asarray(mask)),
                                    image[None], jax.random.key(0))
  pred = np.asarray(probs[0]) >= 0.5
  j = (pred & (mask > 0)).sum() / (pred | (mask > 0)).sum()
  print(f"J {j:.3f}")
  assert np.mean(history[-10:]) < 0.3 * np.mean(history[:10])
  assert j > 0.8, j
  # The detection is on the object (a box anywhere else scores ~0).
  gt_box = np.asarray(boxes_lib.mask_to_box(jnp.asarray(mask))[0])
  box_iou = float(boxes_lib.pairwise_iou(box[None], gt_box[None])[0, 0])
  assert box_iou > 0.6, (box_iou, np.asarray(box), gt_box)


def test_heads_get_gradients_and_an_empty_mask_gives_no_nan(detector):
  image, mask = _ellipse_frame()
  _, params, _, value_and_grad = detector
  valid = np.ones((1,) + mask.shape, bool)
  _, grads = value_and_grad(params, image[None], mask[None], valid,
                            jax.random.key(0))
  for path, g in nnx.to_flat_state(grads):
    name = ".".join(map(str, path))
    assert g.ndim in (1, 2, 4), name  # (out,), (in, out), (kh, kw, in, out)
    if path[0] != "backbone":  # residual branches start at zero in there
      assert float(jnp.abs(g).max()) > 0, f"{name} gets no gradient"
  # An absent object (padded proposals, a degenerate target box): finite.
  loss, grads = value_and_grad(params, image[None], 0 * mask[None], valid,
                               jax.random.key(0))
  assert np.isfinite(float(loss)) and float(loss) > 0
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_empty_mask_loss_only_asks_for_background():
  image, _ = _ellipse_frame(32, 40)
  graphdef, params, _ = _build(tiny_config())
  terms = jax.jit(lambda p: vos_lib.loss_terms(
      graphdef, p, image[None], np.zeros((1, 32, 40), np.float32),
      np.ones((1, 32, 40), bool), jax.random.key(0),
      losses.lovasz_hinge))(params)
  # No object: no box to regress and no mask to draw, but the RPN and the
  # box head are still told that everything is background.
  assert float(terms["rpn_box"]) == float(terms["box_reg"]) == 0.0
  assert float(terms["mask"]) == 0.0
  assert float(terms["rpn_class"]) > 0 and float(terms["box_class"]) > 0


def test_box_propagation_adds_the_previous_box_and_jittered_copies():
  from metavos.models.maskrcnn import tracking
  image, _ = _ellipse_frame(32, 40)
  for on in (True, False):
    config = tiny_config()
    config.maskrcnn.box_propagation = on
    graphdef, params, _ = _build(config)
    prev = jnp.array([8.0, 6.0, 28.0, 22.0])

    def candidates(p):
      model = nnx.merge(graphdef, p)
      levels = [x[0] for x in model.pyramid(image[None])]
      return tracking.candidate_boxes(model, levels, prev, jax.random.key(0),
                                      32, 40)

    rois, ok = jax.jit(candidates)(params)
    assert rois.shape[0] == 8 + (4 if on else 0)
    if on:
      np.testing.assert_allclose(rois[8], prev)
      moved = np.abs(np.asarray(rois[9:]) - np.asarray(prev))
      assert (moved <= 0.1 * np.array([20, 16, 20, 16]) + 1e-4).all()
      assert moved.max() > 0 and bool(ok[8:].all())
