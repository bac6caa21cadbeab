"""What every method builds the same way: data, model, inner-loop unrolling."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from metavos import models
from metavos.data import datasets, pipeline, synthetic
from metavos.finetune import video as video_lib
from metavos.models import interface
from metavos.runtime import checkpoint, metric_writer, platform


def data_root(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The dataset root: `config.data.root`, or synthetic videos in the workdir.

  With no root the synthetic generator writes (once; it is deterministic) a
  DAVIS-2017-layout dataset under `<workdir>/synthetic_data`, so the same
  reader serves synthetic and real data.
  """
  if config.data.root:
    return config.data.root
  s = config.data.synthetic
  root = os.path.join(workdir, "synthetic_data")
  synthetic.ensure(root, num_videos=s.num_videos, num_frames=s.num_frames,
                   height=s.height, width=s.width, max_objects=s.max_objects,
                   seed=s.seed)
  return root


def open_split(config: ml_collections.ConfigDict, root: str, split: str,
               whole_split: bool = False):
  """`split` of the configured dataset: this process's block of a TFDS
  split unless `whole_split` (datasets.get_dataset)."""
  d = config.data
  return datasets.get_dataset(d.kind, root, year=d.year, split=split,
                              resolution=d.resolution,
                              whole_split=whole_split)


def train_videos(config: ml_collections.ConfigDict, workdir: str):
  """The training split at `config.train.image_size`, indexed, its frames
  decoded as batches need them (metavos.data.pipeline)."""
  ds = open_split(config, data_root(config, workdir), config.data.train_split)
  return pipeline.index_videos(ds, tuple(config.train.image_size),
                               config.data.loader.threads)


def unroll(config: ml_collections.ConfigDict) -> bool | int:
  """`config.unroll` resolved by metavos.runtime.platform.unroll."""
  return platform.unroll(config.unroll)


@dataclasses.dataclass(frozen=True)
class Model:
  """A built model: its split parameters and the functions that use them.

  Attributes:
    graphdef: the nnx graph definition (static).
    params: the initial parameter pytree.
    vos: the interface every method trains and segments through.
    apply_fn: `apply_fn(params, images (B, H, W, 3)) -> logits (B, H, W, 1)`
      for dense segmenters; None for the detector.
    apply_with_aux_fn: `-> (logits, [side logits])` (OSVOS deep
      supervision); None for the detector.
  """
  graphdef: Any
  params: Any
  vos: interface.VOSModel
  apply_fn: Callable | None
  apply_with_aux_fn: Callable | None


def build_model(config: ml_collections.ConfigDict, seed: int) -> Model:
  """Builds `config.model`; records its resolved input normalisation in
  `config.model.input_norm`, so config.json and every checkpoint say which
  one the parameters were trained with."""
  model = models.build_model(config.model, nnx.Rngs(seed))
  config.model.input_norm = model.backbone.input_norm
  graphdef, params = nnx.split(model, nnx.Param)
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  logging.info("Model %s/%s: %d parameters", config.model.name,
               config.model.backbone, n)
  vos = models.make_vos_model(config.model, graphdef)
  if config.model.name in models.DETECTOR_NAMES:  # no dense logit map
    return Model(graphdef, params, vos, None, None)
  return Model(graphdef, params, vos, models.make_apply_fn(graphdef),
               models.make_apply_with_aux_fn(graphdef))


def frozen_mask(model: Model, num_frozen: int, field: str):
  """The parameters of the backbone's first `num_frozen` stages (a tree of
  bools like `model.params`, True = kept fixed), or None when every layer
  trains; `field` is the config field that set `num_frozen`, for errors.

  Raises:
    ValueError: frozen stages on a model that cannot be split (the
      detector), or more stages than its backbone has.
  """
  if not num_frozen:
    return None
  if model.vos.frozen_mask is None:
    raise ValueError(f"config.{field}={num_frozen} needs a dense model (fcn, "
                     f"osvos); this model trains every layer: set "
                     f"--config.{field}=0.")
  try:
    return model.vos.frozen_mask(model.params, num_frozen)
  except ValueError as e:
    raise ValueError(f"config.{field}: {e}") from None


def trained_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Where mode=evaluate reads parameters: the workdir's own checkpoints
  first, then `config.restore`."""
  own = os.path.join(workdir, "checkpoints")
  if checkpoint.has_checkpoint(own):
    return check_input_norm(config, own)
  if config.restore:
    return check_input_norm(config, config.restore)
  raise ValueError(
      f"mode=evaluate needs trained parameters: none in {own} and "
      "--config.restore is empty. Pass --config.restore=<run>/checkpoints "
      "from a training run.")


def check_input_norm(config: ml_collections.ConfigDict, path: str) -> str:
  """Refuses parameters of another family of network (OSVOS-style model vs
  memory network, from the training run's config.json) or trained with
  another input normalisation.

  Checkpoints record `config.model.input_norm`, or a memory network's
  `config.memory.input_norm` (`train_loop.run`); one saved before that
  field existed is taken as it is.

  Returns:
    `path`, checked.

  Raises:
    ValueError: naming the checkpoint, both methods or normalisations, and
      the fix (the training run's settings, where its config.json has them).
  """
  family = "model" if "model" in config else "memory"
  run = _run_config(path)
  if "method" in run and family not in run:
    raise ValueError(
        f"{path}: parameters trained by method {run['method']!r}, whose "
        f"network this config (method {config.method!r}) does not build. "
        f"Fix: evaluate them with that method's config, "
        f"configs/{run['method']}.py, and the training run's settings.")
  if family == "model":
    want = config.model.input_norm or models.input_norm(config.model)
    field, keys = "model.input_norm", ("model.backbone", "model.pretrained")
  else:
    # Memory networks: "<key encoder's>,<value encoder's>", resolved when
    # the network is built (metavos.memory.network.load_encoders);
    # memory_networks.restore checks again after building.
    want = config.memory.input_norm
    if not want:
      return path
    field, keys = "memory.input_norm", tuple(
        f"memory.{name}" for name in ("key_backbone", "key_pretrained",
                                      "value_backbone", "value_pretrained"))
  saved = checkpoint.read_metadata(path).get("input_norm")
  if saved and saved != want:
    ours = {key: _get(config, key) for key in keys}
    theirs = {key: _get(run, key) for key in keys}
    flags = [f"--config.{key}={value or repr(value)}"
             for key, value in theirs.items()
             if value is not None and value != ours[key]]
    fix = (f"pass the settings of the run that trained them (its "
           f"config.json): {' '.join(flags)}" if flags else
           f"use the training run's model settings, or pass "
           f"--config.{field}={saved}")
    settings = ", ".join(f"{key}={value!r}" for key, value in ours.items())
    raise ValueError(
        f"{path}: parameters trained on {saved!r}-normalised images, but this "
        f"config builds a model that feeds them {want!r} ones ({settings}). "
        f"Fix: {fix}.")
  return path


def _get(tree, key: str):
  """`tree["a"]["b"]` for key "a.b" (a ConfigDict or dicts); None if absent."""
  for part in key.split("."):
    tree = tree.get(part) if hasattr(tree, "get") else None
  return tree


def _run_config(path: str) -> dict[str, Any]:
  """The config.json of the run whose checkpoint `path` names (in the
  workdir above its `checkpoints/`); {} where there is no readable one."""
  root, _ = checkpoint.locate(path)
  try:
    return json.loads((root.parent / metric_writer.CONFIG_FILE).read_text())
  except (OSError, ValueError):
    return {}


def video_segmenter(config: ml_collections.ConfigDict, model: Model):
  """The test-time fine-tuning segmenter configured by `config.finetune`."""
  return video_lib.VideoSegmenter(
      model.vos,
      video_lib.FinetuneConfig.from_config(config.finetune, unroll(config),
                                           config.eval.input_size))
