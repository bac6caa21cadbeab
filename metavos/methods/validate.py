"""One start-up validation pass, before any data is decoded or compiled.

What a run will read later must fail now, in seconds, with a message naming
the config key or file and the fix, not after hours of training:

- config values chosen from a fixed set (losses), and every numeric
  setting with a range (counts, sizes, rates, thresholds) within it;
- every global count a training step splits over the devices (the batch,
  two-shot's labelled pairs): a multiple of the data mesh's devices;
- the parent's training window (`parent.crop_size`) fits its frames;
- every split that training and evaluation read: the split exists, and (DAVIS
  layouts) every sequence's frames and annotations pair up, every frame is
  whole and the size of its mask, every mask's values follow the mask policy,
  and the first annotated mask holds the objects (other readers check their
  split here and their files when loaded);
- the output location: writable.

Synthetic data (`data.root=""`) is generated correct by construction.
"""

from __future__ import annotations

import os
import tempfile
import time

import jax
import ml_collections
from absl import logging

from metavos.data import davis, io
from metavos.data.errors import DataError
from metavos.finetune import inner_loop, losses
from metavos.methods import setup
from metavos.runtime import sharding

# Config keys that name a loss, where a method's config has them.
_LOSS_KEYS = ("finetune.loss", "meta.loss", "parent.loss")


def validate(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Checks `config`, the data it reads and `workdir` (see module doc).

  Raises:
    ValueError: a config value that cannot work (names the key).
    DataError: a bad split, sequence or file (names the file).
    OSError: `workdir` is not writable (names it).
  """
  check_config(config)
  check_workdir(workdir)
  if config.data.root:
    for split in splits_read(config):
      # The evaluation split is read by the DAVIS rules; a training split
      # may hold sparse label sets whose objects enter later (two-shot reads
      # it so), and each method's loader applies its own rule to it when it
      # loads the split at start-up.
      check_split(config, split,
                  allow_new_objects=split != config.data.split)


def check_config(config: ml_collections.ConfigDict) -> None:
  for key in _LOSS_KEYS:
    section, name = key.split(".")
    if section in config and name in config[section]:
      try:
        losses.get_loss(config[section][name])
      except ValueError as e:
        raise ValueError(f"config.{key}: {e}") from None
  check_ranges(config)
  if config.get("mode") == "train":
    check_device_split(config)
    check_crop_size(config)
  ft = config.get("finetune", {})
  optimizer = ft.get("optimizer", "sgd")
  inner_loop.check_optimizer(optimizer)
  if optimizer != "sgd" and config.get("method") == "eosvos":
    raise ValueError("config.finetune.optimizer: e-OSVOS meta-learns rates "
                     "for plain SGD; set --config.finetune.optimizer=sgd.")
  if ft.get("undo_balance") and ft.get("loss") not in losses.BALANCED_LOSSES:
    raise ValueError(f"config.finetune.undo_balance needs a class-balanced "
                     f"finetune.loss {losses.BALANCED_LOSSES}, got "
                     f"{ft.get('loss')!r}.")


# The range of each numeric setting that has one, (lowest, highest); keys a
# method's config lacks are skipped. Below (or above) it a value has no
# meaning, and most such values would fail only deep in a run, or silently
# train nothing: a negative step count ran a whole "training" of no steps.
_COUNT, _SIZE = (0, None), (1, None)  # 0 = none of these; at least one.
_RATE, _FRACTION = (0.0, None), (0.0, 1.0)
_RANGES = {
    **dict.fromkeys((
        "train.num_steps", "parent.num_steps", "finetune.num_steps",
        "finetune.online_steps", "finetune.online_interval",
        "twoshot.warmup_steps", "twoshot.phase2_steps",
        "pretrain.synthetic_steps", "oneshot.static_pretrain_steps",
        "loss.start_step", "loss.end_step", "data.max_eval_videos",
        "finetune.frozen_stages", "parent.frozen_stages",
        "memory.frozen_key_stages", "memory.top_k", "twoshot.anchor_pairs"),
        _COUNT),
    **dict.fromkeys((
        "train.batch_size", "train.checkpoint_every", "train.log_every",
        "train.max_checkpoints", "parent.batch_size", "pretrain.batch_size",
        "finetune.bank", "finetune.copies", "finetune.frames_per_call",
        "finetune.steps_per_call", "finetune.num_annotated",
        "finetune.online_recent", "meta.num_inner_steps", "meta.num_query",
        "meta.support_copies", "memory.max_memory", "memory.mem_every",
        "clip.max_objects", "labels.per_video"), _SIZE),
    **dict.fromkeys((
        "finetune.lr", "finetune.max_grad_norm", "parent.lr", "optim.lr",
        "optim.grad_clip", "meta.outer_lr", "meta.lrs_outer_lr",
        "meta.lr_init"), _RATE),
    **dict.fromkeys((
        "finetune.momentum", "finetune.bg_threshold", "loss.final_p",
        "twoshot.teacher_threshold", "twoshot.self_label_threshold",
        "twoshot.ema_max"), _FRACTION),
}


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Every setting of `_RANGES` that `config` has lies in its range (a NaN
  in none)."""
  for key, (low, high) in _RANGES.items():
    section, name = key.split(".")
    if name not in config.get(section, {}):
      continue
    value = config[section][name]
    if not (low <= value and (high is None or value <= high)):  # NaN: fails
      bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
      raise ValueError(f"config.{key} must be {bounds}, got {value!r}.")


# Global counts a training step splits over the data mesh's devices.
_SPLIT_KEYS = ("train.batch_size", "twoshot.anchor_pairs")


def check_device_split(config: ml_collections.ConfigDict) -> None:
  """Every count of `_SPLIT_KEYS` splits evenly over the data mesh's
  devices (`config.num_devices`, 0: all); otherwise a run stops at its first
  such batch, for the labelled pairs only after the warm-up. (Whether that
  many devices exist, `sharding.make_mesh` checks.)"""
  n = config.get("num_devices", 0) or jax.device_count()
  for key in _SPLIT_KEYS:
    section, name = key.split(".")
    value = config.get(section, {}).get(name, 0)
    if value:  # 0: no such part in the batch (e.g. no labelled pairs).
      try:
        sharding.check_splits(value, n)
      except ValueError as e:
        raise ValueError(f"config.{key}={value}: {e} (Or set "
                         f"--config.num_devices to a divisor of it.)") \
            from None


def check_crop_size(config: ml_collections.ConfigDict) -> None:
  """`parent.crop_size`, where set, is a window of the training frames
  (`train.image_size`): two sides > 0, neither larger than the frame's."""
  crop = config.get("parent", {}).get("crop_size")
  if not crop:
    return
  frame = tuple(config.train.image_size)
  if not (isinstance(crop, (tuple, list)) and len(crop) == 2
          and all(isinstance(c, int) and not isinstance(c, bool) and 0 < c <= f
                  for c, f in zip(crop, frame))):
    raise ValueError(
        f"config.parent.crop_size={crop!r} is not a window of the "
        f"{frame[0]}x{frame[1]} training frames (config.train.image_size): "
        f"give (H, W) with 0 < H <= {frame[0]} and 0 < W <= {frame[1]}, or "
        f"() for whole frames.")


def splits_read(config: ml_collections.ConfigDict) -> list[str]:
  """The splits this run reads: the evaluation split, and the training
  split unless the mode is evaluate."""
  splits = [config.data.split]
  if config.mode == "train" and config.data.train_split not in splits:
    splits.append(config.data.train_split)
  return splits


def check_split(config: ml_collections.ConfigDict, split: str,
                allow_new_objects: bool = False) -> None:
  """Opens `split` and, for DAVIS layouts, checks every sequence as loading
  it would (`davis.davis_video`): frames and annotations pair up, every
  frame's and mask's size agree, every mask's values follow the mask policy
  and (unless `allow_new_objects`) its ids the first annotated frame's
  objects. Frames are checked from their headers and end markers
  (`io.check_image_file`), not decoded."""
  ds = setup.open_split(config, config.data.root, split)
  if not ds.sequences:
    raise DataError(config.data.root, f"split {split!r} lists no sequence",
                    "list at least one sequence in the split file")
  if not isinstance(ds, davis.DavisDataset):
    return
  start = time.perf_counter()
  for name in ds.sequences:
    try:
      davis.davis_video(name, ds.frame_files(name), year=ds.year,
                        allow_new_objects=allow_new_objects,
                        read_image=io.check_image_file)
    except DataError as e:
      raise DataError(e.path, e.problem, f"{e.fix}, or drop sequence "
                      f"{name!r} from split {split!r}") from None
  logging.info("Split %r: %d sequences checked (every frame's header and "
               "mask) in %.1f s.", split, len(ds.sequences),
               time.perf_counter() - start)


def check_workdir(workdir: str) -> None:
  """`workdir` exists (or can be made) and takes a file."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise OSError(f"{workdir}: cannot write the run's outputs here "
                  f"({e.strerror or e}). Fix: pass a writable --workdir.") \
        from None
