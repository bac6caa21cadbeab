"""Tests of loading torchvision-layout ResNet weights into the backbones."""

import sys

import jax
import numpy as np
import pytest
from flax import nnx

from metavos import models
from metavos.data import errors
from metavos.data.errors import DataError
from metavos.models import normalization, pretrained

jax.config.update("jax_disable_most_optimizations", True)


def _torchvision_keys(widths, depths):
  """Keys and torch shapes of a BasicBlock ResNet's state dict, written out
  from torchvision's structure (independently of `pretrained.torchvision_name`).
  """
  shapes = {"conv1.weight": (widths[0], 3, 7, 7)}
  def bn(prefix, c):
    shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,),
                   f"{prefix}.running_mean": (c,),
                   f"{prefix}.running_var": (c,),
                   f"{prefix}.num_batches_tracked": ()})
  bn("bn1", widths[0])
  in_ch = widths[0]
  for i, (w, d) in enumerate(zip(widths, depths)):
    for j in range(d):
      p = f"layer{i + 1}.{j}"
      shapes[f"{p}.conv1.weight"] = (w, in_ch, 3, 3)
      bn(f"{p}.bn1", w)
      shapes[f"{p}.conv2.weight"] = (w, w, 3, 3)
      bn(f"{p}.bn2", w)
      if j == 0 and i > 0:
        shapes[f"{p}.downsample.0.weight"] = (w, in_ch, 1, 1)
        bn(f"{p}.downsample.1", w)
      in_ch = w
  shapes["fc.weight"], shapes["fc.bias"] = (1000, in_ch), (1000,)
  return shapes


def _random_state_dict(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return {k: (rng.standard_normal(s).astype(np.float32) if s
              else np.array(7, np.int64)) for k, s in shapes.items()}


TINY_KEYS = _torchvision_keys((8, 16, 32, 64), (1, 1, 1, 1))


@pytest.fixture
def tiny_npz(tmp_path):
  state_dict = _random_state_dict(TINY_KEYS)
  path = tmp_path / "tiny.npz"
  np.savez(path, **state_dict)
  return path, state_dict


def test_npz_sets_exactly_the_file_values(tiny_npz):
  path, sd = tiny_npz
  backbone = models.build_resnet("tiny", 4, rngs=nnx.Rngs(0))
  report = models.load_pretrained_backbone(backbone, path)
  # Spot checks, element by element, of the (out,in,kh,kw)->(kh,kw,in,out) map.
  k = np.asarray(backbone.layer2[0].conv1.kernel[...])
  w = sd["layer2.0.conv1.weight"]
  for o, i, y, x in [(0, 0, 0, 0), (15, 7, 2, 1), (3, 5, 1, 2)]:
    assert k[y, x, i, o] == w[o, i, y, x]
  np.testing.assert_array_equal(backbone.conv1.kernel[...][6, 0, 2, 7],
                                sd["conv1.weight"][7, 2, 6, 0])
  np.testing.assert_array_equal(
      backbone.layer3[0].downsample[0].kernel[...][0, 0, :, 4],
      sd["layer3.0.downsample.0.weight"][4, :, 0, 0])
  np.testing.assert_array_equal(backbone.norm1.scale[...], sd["bn1.weight"])
  np.testing.assert_array_equal(backbone.layer4[0].norm2.bias[...],
                                sd["layer4.0.bn2.bias"])
  np.testing.assert_array_equal(
      backbone.layer2[0].downsample[1].scale[...],
      sd["layer2.0.downsample.1.weight"])
  # Every parameter came from the file, and nothing else was read.
  dropped = {k for k in sd if k.startswith("fc.") or "running" in k
             or "num_batches" in k}
  assert set(report.loaded) == set(sd) - dropped
  assert set(report.dropped) == dropped
  n_loaded = sum(sd[k].size for k in report.loaded)
  assert n_loaded == sum(x.size for x in
                         jax.tree.leaves(nnx.state(backbone, nnx.Param)))


def test_build_model_loads_pretrained_backbone(tiny_npz):
  path, sd = tiny_npz
  config = models.default_model_config()
  config.backbone, config.fpn_dim, config.pretrained = "tiny", 8, str(path)
  model = models.build_model(config, nnx.Rngs(0))
  np.testing.assert_array_equal(model.backbone.layer1[0].norm1.scale[...],
                                sd["layer1.0.bn1.weight"])


def _load_dict(state_dict, tmp_path):
  path = tmp_path / "bad.npz"
  np.savez(path, **state_dict)
  backbone = models.build_resnet("tiny", 4, rngs=nnx.Rngs(0))
  models.load_pretrained_backbone(backbone, path)


def test_missing_key_is_named(tmp_path):
  sd = _random_state_dict(TINY_KEYS)
  del sd["layer2.0.downsample.1.bias"]
  with pytest.raises(DataError, match="layer2.0.downsample.1.bias") as info:
    _load_dict(sd, tmp_path)
  assert "bad.npz" in str(info.value) and "missing" in str(info.value)


def test_unexpected_key_is_named(tmp_path):
  sd = _random_state_dict(TINY_KEYS)
  sd["layer5.0.conv1.weight"] = np.zeros((3, 3, 3, 3), np.float32)
  with pytest.raises(DataError, match="layer5.0.conv1.weight") as info:
    _load_dict(sd, tmp_path)
  assert "unexpected" in str(info.value) and "Fix:" in str(info.value)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
  sd = _random_state_dict(TINY_KEYS)
  sd["layer1.0.conv2.weight"] = np.zeros((8, 8, 5, 5), np.float32)
  with pytest.raises(DataError) as info:
    _load_dict(sd, tmp_path)
  message = str(info.value)
  assert "layer1.0.conv2.weight" in message
  assert "(8, 8, 5, 5)" in message and "(8, 8, 3, 3)" in message


def test_missing_file_and_unknown_format(tmp_path):
  backbone = models.build_resnet("tiny", 4, rngs=nnx.Rngs(0))
  with pytest.raises(DataError, match="not found"):
    models.load_pretrained_backbone(backbone, tmp_path / "nope.npz")
  (tmp_path / "w.safetensors").write_bytes(b"x")
  with pytest.raises(DataError, match="unsupported"):
    models.load_pretrained_backbone(backbone, tmp_path / "w.safetensors")


def test_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
  path = tmp_path / "w.pth"
  path.write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
  with pytest.raises(DataError, match="np.savez") as info:
    pretrained.read_state_dict(path)
  assert "w.pth" in str(info.value) and ".npz" in str(info.value)


def test_resnet18_names_match_torchvision_state_dict():
  shapes = _torchvision_keys((64, 128, 256, 512), (2, 2, 2, 2))
  # torchvision's resnet18().state_dict() has 122 entries: 62 parameters
  # (20 convs, 20 BNs x 2, fc x 2) and 60 BN buffers (20 BNs x 3).
  assert len(shapes) == 122
  backbone = nnx.eval_shape(lambda: models.build_resnet("resnet18",
                                                        rngs=nnx.Rngs(0)))
  flat = nnx.to_flat_state(nnx.state(backbone, nnx.Param))
  ours = {pretrained.torchvision_name(p): v.shape for p, v in flat}
  assert len(ours) == 60
  for name, shape in ours.items():
    assert len(shape) in (1, 4)
    torch_shape = shapes[name]
    assert shape == (torch_shape if len(shape) == 1 else
                     torch_shape[2:] + torch_shape[1::-1]), name


def _torch_resnet_features(torch, sd, x, depths):
  """Reference forward of torchvision's BasicBlock ResNet with GroupNorm,
  written with torch.nn.functional on NCHW tensors from the state dict."""
  F = torch.nn.functional

  def norm(prefix, y):
    return F.group_norm(y, 32, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"],
                        eps=1e-5)

  x = F.relu(norm("bn1", F.conv2d(x, sd["conv1.weight"], stride=2,
                                  padding=3)))
  x = F.max_pool2d(x, 3, stride=2, padding=1)
  features = []
  for i, depth in enumerate(depths):
    for j in range(depth):
      p, stride = f"layer{i + 1}.{j}", (2 if i > 0 and j == 0 else 1)
      y = F.relu(norm(f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"],
                                           stride=stride, padding=1)))
      y = norm(f"{p}.bn2", F.conv2d(y, sd[f"{p}.conv2.weight"], padding=1))
      if f"{p}.downsample.0.weight" in sd:
        x = norm(f"{p}.downsample.1",
                 F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
      x = F.relu(x + y)
    features.append(x.numpy().transpose(0, 2, 3, 1))
  return features


def test_pth_loading_and_parity_with_torch_reference(tmp_path):
  # The same weights through a torch (NCHW, torch paddings) ResNet-18 forward
  # and through ours must give the same C2..C5 features: this checks the
  # transposes, paddings, strides and block wiring at once.
  torch = pytest.importorskip("torch")
  shapes = _torchvision_keys((64, 128, 256, 512), (2, 2, 2, 2))
  rng = np.random.default_rng(0)
  sd = {}
  for k, shape in shapes.items():
    if k.endswith(".weight") and len(shape) == 4:  # He init keeps scale sane
      value = rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))
    elif len(shape) == 1:
      value = (k.endswith("weight") + 0.1 * rng.standard_normal(shape))
    else:
      value = np.array(3)
    sd[k] = torch.from_numpy(np.asarray(value, np.float32 if shape
                                        else np.int64))
  path = tmp_path / "r18_gn.pth"
  torch.save(sd, path)
  backbone = models.build_resnet("resnet18", 32, rngs=nnx.Rngs(0))
  report = models.load_pretrained_backbone(backbone, path)
  assert len(report.loaded) == 60

  images = rng.uniform(size=(1, 37, 45, 3)).astype(np.float32)
  ours = jax.jit(lambda b, x: b(x))(backbone, images)
  mean = np.array(normalization.IMAGENET_MEAN, np.float32)
  std = np.array(normalization.IMAGENET_STD, np.float32)
  x = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2))
  with torch.no_grad():
    theirs = _torch_resnet_features(torch, sd, x, (2, 2, 2, 2))
  for a, b in zip(ours, theirs):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_memory_network_encoders_load_pretrained(tiny_npz):
  """STCN-style encoders (stride 16) take a torchvision file; its layer4 is
  dropped and every other parameter of the network keeps its initialisation."""
  from configs import stcn  # pylint: disable=g-import-not-at-top
  from metavos.memory import network  # pylint: disable=g-import-not-at-top
  path, sd = tiny_npz
  cfg = stcn.memory_config()
  cfg.key_backbone = cfg.value_backbone = "tiny"
  cfg.key_dim = cfg.value_dim = cfg.decoder_dim = 8
  _, plain = network.build(cfg, nnx.Rngs(0))
  cfg.key_pretrained = cfg.value_pretrained = str(path)
  _, loaded = network.build(cfg, nnx.Rngs(0))
  for enc in ("key_encoder", "value_encoder"):
    k = np.asarray(loaded[enc]["layer3"][0]["conv1"]["kernel"][...])
    np.testing.assert_array_equal(
        k, sd["layer3.0.conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(loaded[enc]["norm1"]["scale"][...],
                                  sd["bn1.weight"])
    assert not np.array_equal(plain[enc]["conv1"]["kernel"][...],
                              loaded[enc]["conv1"]["kernel"][...])
  for part in ("key_proj", "mask_stem", "skip4"):
    for a, b in zip(jax.tree.leaves(plain[part]), jax.tree.leaves(loaded[part])):
      np.testing.assert_array_equal(a, b)
  cfg.key_backbone = "small"   # a file of another architecture: named error
  with pytest.raises(DataError, match="tiny.npz") as error:
    network.build(cfg, nnx.Rngs(0))
  # The fix names the settings the memory network reads, not model.*.
  assert "memory.key_backbone" in str(error.value)
  assert "model." not in str(error.value)
  cfg.key_backbone = "tiny"
  cfg.value_pretrained = str(path.parent / "missing.npz")
  with pytest.raises(DataError, match=r"missing.npz: pretrained weights file "
                     r"not found.*memory.value_pretrained=''"):
    network.build(cfg, nnx.Rngs(0))


def test_naming_settings_renames_the_settings_not_the_files_keys():
  """The memory encoders' wrapper rewrites model.pretrained/model.backbone
  only: a key of the file that starts with `model.` is quoted as stored."""
  with pytest.raises(DataError) as error:
    with errors.naming_settings("memory.value_"):
      raise DataError("w.npz", "has no key 'model.backbone.conv1.weight' "
                      "for model.backbone", "set model.pretrained=''")
  assert str(error.value) == (
      "w.npz: has no key 'model.backbone.conv1.weight' for "
      "memory.value_backbone. Fix: set memory.value_pretrained=''")
  # One message: the loader's original is not chained beneath it.
  assert error.value.__cause__ is None and error.value.__suppress_context__
