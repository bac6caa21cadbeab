"""config_fields.from_block: every settings dataclass from its block, by
name, refusing missing fields and keys nothing reads."""

import dataclasses

import ml_collections
import pytest

from configs import eosvos as eosvos_config
from configs import oneshot as oneshot_config
from configs import stcn as stcn_config
from metavos.finetune import video
from metavos.memory import clip_augment, propagate, static_clips
from metavos.methods import eosvos
from metavos.models.maskrcnn import model as maskrcnn_model
from metavos.runtime import config_fields


@dataclasses.dataclass(frozen=True)
class _Spec:
  size: tuple[int, int]
  rate: float
  name: str = "x"


def test_fields_by_name_lists_as_tuples_and_given_values_win():
  block = ml_collections.ConfigDict(dict(size=[3, 4], rate=0.5, name="a",
                                         note="read by someone else"))
  spec = config_fields.from_block(_Spec, block, "config.spec",
                                  other_keys=("note",), rate=2.0)
  assert spec == _Spec((3, 4), 2.0, "a")


def test_a_missing_field_and_a_key_nothing_reads_fail_naming_the_block():
  with pytest.raises(ValueError, match=r"config.spec lacks \['name'\]"):
    config_fields.from_block(_Spec, {"size": (1, 1), "rate": 1.0},
                             "config.spec")
  with pytest.raises(ValueError, match=r"config.spec has keys \['rat'\]"):
    config_fields.from_block(
        _Spec, {"size": (1, 1), "rate": 1.0, "name": "a", "rat": 2.0},
        "config.spec")


def test_every_settings_block_of_the_shipped_configs_converts():
  e, s = eosvos_config.get_config("smoke"), stcn_config.get_config("smoke")
  ft = video.FinetuneConfig.from_config(e.finetune, True, (48, 64))
  assert ft.num_steps == e.finetune.num_steps and ft.input_size == (48, 64)
  assert eosvos.meta_config(e).num_inner_steps == e.meta.num_inner_steps
  assert propagate.PropagateConfig.from_config(s.memory).top_k == (
      s.memory.top_k or None)
  assert clip_augment.ClipAugmentConfig.from_config(s.clip.augment) == (
      clip_augment.ClipAugmentConfig())
  o = oneshot_config.get_config("smoke")
  assert static_clips.StaticClipConfig.from_config(
      o.oneshot.static).brightness == o.oneshot.static.brightness
  assert maskrcnn_model.MaskRCNNSpec.from_config(
      eosvos_config.get_config("smoke,model=maskrcnn").model.maskrcnn).mask_size


def test_a_misspelt_finetune_key_added_to_the_block_is_refused():
  e = eosvos_config.get_config("smoke")
  with e.finetune.unlocked():
    e.finetune.num_step = 3
  with pytest.raises(ValueError, match=r"config.finetune has keys "
                     r"\['num_step'\]"):
    video.FinetuneConfig.from_config(e.finetune, True)
