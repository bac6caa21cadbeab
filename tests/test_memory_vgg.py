"""VGG16 as the memory networks' key and value encoders: pretrained weights
from the VGG16 layouts, features against an independent reference, the
value encoder's mask stem, input normalisations recorded and checked on
restore, both networks (STCN-like, XMem-style) running on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _vgg_files import random_convs, reference_stages, write_hed, \
    write_torchvision
from configs import stcn
from metavos.memory import chain, network
from metavos.methods import memory_networks
from metavos.runtime import checkpoint

pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("vgg")
  convs = random_convs()
  hed, torch = tmp / "hed.weights.h5", tmp / "vgg16.npz"
  write_hed(hed, convs)
  write_torchvision(torch, convs)
  return convs, str(hed), str(torch)


def _config(key="vgg16", value="tiny", key_file="", value_file="",
            network_name="stcn"):
  c = stcn.get_config(f"smoke,network={network_name}")
  m = c.memory
  m.key_backbone, m.value_backbone = key, value
  m.key_pretrained, m.value_pretrained = key_file, value_file
  return c


def test_encoders_load_every_layout_and_match_the_reference(files):
  convs, hed, torch = files
  config = _config(value="vgg16", key_file=hed, value_file=torch)
  fns, params = memory_networks.build_network(config)
  # Each file's normalisation, per encoder, recorded for checkpoints.
  assert config.memory.input_norm == "caffe_bgr,imagenet_rgb"
  net = nnx.merge(fns.graphdef, params)
  for encoder in (net.key_encoder, net.value_encoder):
    loaded = [c for block in encoder.trunk.blocks for c in block]
    for conv, (kernel, bias) in zip(loaded, convs, strict=True):
      np.testing.assert_array_equal(conv.kernel[...], kernel)
      np.testing.assert_array_equal(conv.bias[...], bias)
  images = jnp.asarray(np.random.default_rng(0).random((1, 40, 56, 3)),
                       jnp.float32)
  for encoder, norm in ((net.key_encoder, "caffe_bgr"),
                        (net.value_encoder, "imagenet_rgb")):
    # Stride 4/8/16 features = the reference's conv3_3 .. conv5_3, each
    # through its GroupNorm (the identity's scale and offset at init).
    want = reference_stages(images, convs, norm)[2:]
    got = network._features(encoder, images)
    for g, w, gn in zip(got, want, encoder.norms):
      np.testing.assert_allclose(g, gn(jnp.asarray(w)), rtol=2e-3, atol=2e-3)
    # The value stem's mask channels add to conv1_1 before its ReLU: a zero
    # mask contribution changes nothing.
    zero = jnp.zeros(images.shape[:3] + (64,))
    for a, b in zip(network._features(encoder, images, zero), got):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_xmem_network_runs_on_vgg16_encoders(files):
  # Forward only: the encoders' weights reach the loss through the same
  # modules either way, and a gradient program through VGG16 would cost
  # ~30 s of compilation.
  _, hed, _ = files
  config = _config(key_file=hed, network_name="xmem")
  fns, params = memory_networks.build_network(config)
  assert config.memory.input_norm == "caffe_bgr,imagenet_rgb"
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.random((3, 32, 48, 3)), jnp.float32)
  masks = jnp.asarray(rng.random((1, 32, 48)) > 0.5, jnp.float32)
  out = jax.jit(lambda p: chain.run_chain(fns, p, frames[0], masks,
                                          frames[1:]).probs)(params)
  assert out.shape == (2, 2, 32, 48)
  np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)


def test_restore_refuses_another_normalisation(files, tmp_path):
  _, hed, torch = files
  config = _config(key_file=hed)
  _, params = memory_networks.build_network(config)
  with checkpoint.Checkpointer(tmp_path / "checkpoints") as ckpt:
    ckpt.save(1, {"params": params}, {"input_norm": config.memory.input_norm})
    ckpt.wait_until_finished()
  path = str(tmp_path / "checkpoints")
  # Without the weights file the VGG16 encoder would take Caffe's inputs by
  # default too: accepted.
  memory_networks.restore(_config(), path)
  # torchvision weights normalise otherwise: refused, naming the fix.
  with pytest.raises(ValueError, match="'imagenet_rgb,imagenet_rgb' ones") as e:
    memory_networks.restore(_config(key_file=torch), path)
  assert "--config.memory.input_norm=caffe_bgr,imagenet_rgb" in str(e.value)
  # A setting that contradicts the weights file fails at build.
  bad = _config(key_file=torch)
  bad.memory.input_norm = "caffe_bgr,imagenet_rgb"
  with pytest.raises(ValueError, match="leave memory.input_norm empty"):
    memory_networks.build_network(bad)
  # Without a file the setting is what the encoders use.
  told = _config()
  told.memory.input_norm = "imagenet_rgb,imagenet_rgb"
  fns, params = memory_networks.build_network(told)
  assert nnx.merge(fns.graphdef, params).key_encoder.input_norm == (
      "imagenet_rgb")
