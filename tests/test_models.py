"""Tests of the segmentation models: shapes, layout, purity, fitting."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from metavos import models
from metavos.models import fpn

jax.config.update("jax_disable_most_optimizations", True)


def _config(name="fcn", backbone="tiny", fpn_dim=16, norm_groups=4):
  config = models.default_model_config()
  config.name, config.backbone = name, backbone
  config.fpn_dim, config.norm_groups = fpn_dim, norm_groups
  return config


def _images(batch, height, width, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch, height, width, 3))


def _forward(model, images, aux=False):
  """Jitted forward (eager op-by-op dispatch is far slower on CPU)."""
  graphdef, params = models.split_params(model)
  make = models.make_apply_with_aux_fn if aux else models.make_apply_fn
  return jax.jit(make(graphdef))(params, images)


def _param_count(module):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("name", ["fcn", "osvos"])
def test_output_shape_at_odd_size(name):
  model = models.build_model(_config(name), nnx.Rngs(0))
  logits, sides = _forward(model, _images(2, 37, 51), aux=True)
  assert logits.shape == (2, 37, 51, 1)
  assert logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  # OSVOS supervises one side output per stage; the FCN has none.
  assert [s.shape for s in sides] == ([(2, 37, 51, 1)] * 4
                                      if name == "osvos" else [])


def test_small_backbone_shape_at_odd_size():
  model = models.build_model(_config("fcn", "small"), nnx.Rngs(0))
  assert _forward(model, _images(1, 29, 43)).shape == (1, 29, 43, 1)


def test_backbone_feature_strides_follow_torchvision_rounding():
  backbone = models.build_resnet("tiny", 4, rngs=nnx.Rngs(0))
  features = jax.jit(lambda b, x: b(x))(backbone, _images(1, 65, 33))
  # conv1 and the max-pool each halve rounding up; so does every later stage.
  assert [f.shape for f in features] == [
      (1, 17, 9, 8), (1, 9, 5, 16), (1, 5, 3, 32), (1, 3, 2, 64)]


@pytest.mark.parametrize("name, fc_params, torchvision_total", [
    ("resnet18", 512 * 1000 + 1000, 11_689_512),
    ("resnet34", 512 * 1000 + 1000, 21_797_672),
    ("resnet50", 2048 * 1000 + 1000, 25_557_032),
])
def test_backbone_param_count_matches_torchvision(name, fc_params,
                                                  torchvision_total):
  # GroupNorm scale/bias replace BN weight/bias one for one; BN running
  # statistics are buffers, not parameters; the backbone has no fc.
  backbone = nnx.eval_shape(lambda: models.build_resnet(name,
                                                        rngs=nnx.Rngs(0)))
  assert _param_count(backbone) == torchvision_total - fc_params


@pytest.mark.parametrize("channels, requested, expected", [
    (64, 32, 32), (8, 32, 8), (48, 32, 24), (2048, 32, 32), (3, 2, 1),
    (16, 4, 4)])
def test_group_count_is_largest_divisor_not_above_request(channels, requested,
                                                          expected):
  assert models.group_count(channels, requested) == expected


@pytest.mark.parametrize("name", ["fcn", "osvos"])
def test_every_kernel_has_output_neurons_last(name):
  model = models.build_model(_config(name), nnx.Rngs(0))
  convs = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Conv)]
  norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.GroupNorm)]
  assert len(convs) > 10 and len(norms) > 5
  for conv in convs:
    assert conv.kernel.ndim == 4
    assert conv.kernel.shape[-1] == conv.out_features
    assert conv.kernel.shape[-2] == conv.in_features
    if conv.bias is not None:
      assert conv.bias.shape == (conv.out_features,)
  for norm in norms:
    assert norm.scale.ndim == 1 and norm.scale.shape == norm.bias.shape
  # Nothing else: every parameter is a kernel or a per-neuron vector.
  for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    assert leaf.ndim == (4 if path[-1] == "kernel" else 1), path


def test_kernel_last_axis_drives_one_output_channel():
  backbone = models.build_resnet("tiny", 4, rngs=nnx.Rngs(0))
  conv = backbone.conv1
  x = _images(1, 16, 16)
  conv.kernel[...] = conv.kernel[...].at[..., 3].set(0.0)
  y = conv(x)
  assert float(jnp.abs(y[..., 3]).max()) == 0.0
  assert float(jnp.abs(y[..., 2]).max()) > 0.0


@pytest.mark.parametrize("name", ["fcn", "osvos"])
def test_split_leaves_only_params(name):
  model = models.build_model(_config(name), nnx.Rngs(0))
  _, params, rest = nnx.split(model, nnx.Param, ...)
  assert not list(nnx.to_flat_state(rest))
  graphdef, params2 = models.split_params(model)
  images = _images(1, 20, 24)
  logits = jax.jit(models.make_apply_fn(graphdef))(params2, images)
  direct = nnx.jit(type(model).__call__)(model, images)
  np.testing.assert_allclose(logits, direct, rtol=1e-5, atol=1e-6)


def test_vmap_over_param_copies_equals_separate_applies():
  model = models.build_model(_config("osvos"), nnx.Rngs(0))
  graphdef, params = models.split_params(model)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  copies = [jax.tree.unflatten(treedef, [
      leaf + 0.05 * i * jax.random.normal(k, leaf.shape)
      for leaf, k in zip(leaves, keys)]) for i in range(3)]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *copies)
  apply_fn = jax.jit(models.make_apply_with_aux_fn(graphdef))
  images = _images(2, 24, 28)
  batched, batched_sides = jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))(
      stacked, images)
  for i, copy in enumerate(copies):
    single, sides = apply_fn(copy, images)
    np.testing.assert_allclose(batched[i], single, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(batched_sides[2][i], sides[2], rtol=1e-4,
                               atol=1e-5)
  # The copies differ, so a vmap that ignored the axis would fail above.
  assert float(jnp.abs(batched[0] - batched[2]).max()) > 1e-3


def test_output_of_one_image_does_not_depend_on_the_batch():
  model = models.build_model(_config("fcn"), nnx.Rngs(0))
  images = _images(3, 30, 26)
  alone = _forward(model, images[:1])
  in_batch = _forward(model, images)
  with_other = _forward(model, jnp.concatenate([images[:1], 1 - images[1:]]))
  np.testing.assert_allclose(in_batch[:1], alone, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(with_other[:1], alone, rtol=1e-4, atol=1e-5)


def test_osvos_head_starts_at_zero_and_fuses_prepared_side_features():
  model = models.build_model(_config("osvos"), nnx.Rngs(0))
  # Whatever the feature scale (a VGG16 on Caffe inputs gives features in
  # the hundreds), every logit starts at exactly 0.
  images = 200.0 * _images(1, 21, 19)
  fused, sides = _forward(model, images, aux=True)
  assert float(jnp.abs(fused).max()) == 0.0
  assert all(float(jnp.abs(s).max()) == 0.0 for s in sides)
  # The fusion reads the 16-channel prepared features of all four sides
  # (OSVOS' fusion), not their one-channel logits: selecting one channel of
  # the third side returns that channel, upsampled.
  assert model.fuse.kernel.value.shape == (1, 1, 4 * 16, 1)
  third = jax.nn.relu(model.sides[2].prep(model.backbone(images)[2]))
  k = int(jnp.argmax(third.max(axis=(0, 1, 2))))
  assert float(third[..., k].max()) > 0.0
  model.fuse.kernel.value = model.fuse.kernel.value.at[0, 0, 2 * 16 + k,
                                                       0].set(1.0)
  fused = _forward(model, images)
  expected = fpn.resize_to(third[..., k:k + 1], 21, 19)
  np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("field, value", [("name", "unet"),
                                          ("backbone", "resnet101")])
def test_unknown_names_raise_with_options(field, value):
  config = _config()
  config[field] = value
  with pytest.raises(ValueError, match=value) as info:
    models.build_model(config, nnx.Rngs(0))
  options = models.MODEL_NAMES if field == "name" else models.BACKBONE_NAMES
  assert all(option in str(info.value) for option in options)


def _disk(size=32):
  yy, xx = np.mgrid[:size, :size]
  mask = ((yy - 13.0) ** 2 + (xx - 18.0) ** 2) < 8.0 ** 2
  rng = np.random.default_rng(0)
  image = np.where(mask[..., None], [0.9, 0.3, 0.2], [0.2, 0.5, 0.7])
  image = np.clip(image + 0.05 * rng.standard_normal(image.shape), 0, 1)
  return (jnp.asarray(image[None], jnp.float32),
          jnp.asarray(mask[None, ..., None], jnp.float32))


@pytest.mark.parametrize("name", ["fcn", "osvos"])
def test_model_overfits_one_image(name):
  # Proves the decoder is wired end to end: a head that ignored the fine
  # features could not draw the disk's outline at 32x32.
  image, mask = _disk()
  model = models.build_model(_config(name), nnx.Rngs(0))
  graphdef, params = models.split_params(model)
  apply_fn = models.make_apply_fn(graphdef)
  tx = optax.adam(1e-2)

  def loss_fn(p):
    return optax.sigmoid_binary_cross_entropy(apply_fn(p, image), mask).mean()

  @jax.jit
  def train(p):
    def step(carry, _):
      p, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(p)
      updates, opt_state = tx.update(grads, opt_state, p)
      return (optax.apply_updates(p, updates), opt_state), loss
    (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), length=60)
    return p, losses

  params, losses = train(params)
  pred = jax.jit(apply_fn)(params, image) > 0
  iou = jnp.sum(pred & (mask > 0)) / jnp.sum(pred | (mask > 0))
  assert float(losses[-1]) < 0.2 * float(losses[0])
  assert float(iou) > 0.9


@pytest.mark.parametrize("height, width", [(21, 30), (16, 17)])
def test_space_to_depth_stem_equals_strided_conv(height, width):
  stem = models.resnet.SpaceToDepthStem(3, 5, rngs=nnx.Rngs(0))
  images = _images(2, height, width)
  expected = jax.lax.conv_general_dilated(
      images, stem.kernel[...], (2, 2), ((3, 3), (3, 3)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(stem(images), expected, rtol=1e-4, atol=1e-5)
