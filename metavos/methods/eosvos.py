"""e-OSVOS: meta-train the fine-tuning, then fine-tune and segment each video.

train: the model initialisation and neuron-level learning rates are
meta-learned on tasks (sequence, object) with `metavos.meta.meta_step`,
starting from `meta.init_from` (a parent checkpoint), or from an OSVOS parent
network trained first in `<workdir>/parent` (`parent.num_steps` > 0, OSVOS's
own trainer), or from the model's initialisation; a resumed or
`config.restore`d run reads none of these.
evaluate: e-OSVOS-T (T steps on the first frame) and, with
`finetune.online_interval > 0`, e-OSVOS-T-OnA.
"""

from __future__ import annotations

import os

import jax
import ml_collections
from absl import logging

from metavos.data import sampling
from metavos.finetune import lrs as lrs_lib
from metavos.finetune import video as video_lib
from metavos.meta import meta_step
from metavos.methods import registry, setup, train_loop
from metavos.runtime import checkpoint, config_fields, platform, sharding


def meta_config(config: ml_collections.ConfigDict) -> meta_step.MetaConfig:
  m = config.meta
  return config_fields.from_block(
      meta_step.MetaConfig, m, "config.meta",
      # The outer optimiser's, the rates' initialisation and the sampler's.
      other_keys=("init_from", "lr_init", "lr_jitter", "lr_mode",
                  "lrs_outer_lr", "num_query", "outer_lr", "train_lrs",
                  "weight_decay"),
      augment=tuple(sorted(m.augment.to_dict().items())) if m.augment
      else None,
      unroll=setup.unroll(config),
      tasks_per_call=platform.items_per_call(m.tasks_per_call),
      # What adapts is test-time fine-tuning's setting, so meta-training
      # learns the inner loop evaluation runs.
      frozen_stages=config.finetune.frozen_stages,
      bank=config.finetune.bank,
      max_grad_norm=config.finetune.max_grad_norm)


def frozen_mask(config: ml_collections.ConfigDict, model: setup.Model):
  """The parameters `finetune.frozen_stages` keeps fixed (a tree of bools),
  or None when every layer adapts (`setup.frozen_mask`)."""
  return setup.frozen_mask(model, config.finetune.frozen_stages,
                           "finetune.frozen_stages")


def make_optimizer(config: ml_collections.ConfigDict, frozen=None):
  """The outer optimiser; `frozen` as `frozen_mask` returns it."""
  m = config.meta
  return meta_step.make_optimizer(m.outer_lr, m.weight_decay, m.train_lrs,
                                  m.lrs_outer_lr, frozen)


def initial_meta_params(config, params, frozen=None):
  """Meta-parameters starting from `params`; pure, so it can be traced.
  `frozen` as `frozen_mask` returns it (those layers' rates are 0)."""
  rng = jax.random.key(config.seed + 2)
  return meta_step.init_meta_params(params, config.meta.lr_mode,
                                    config.meta.lr_init, config.meta.lr_jitter,
                                    rng, frozen)


def make_update(config, model: setup.Model, mesh):
  """The jitted outer step: batch sharded on `data`, state replicated."""
  cfg = meta_config(config)
  tx = make_optimizer(config, frozen_mask(config, model))

  def update(state, batch, rng):
    mp, opt, metrics = meta_step.meta_update(
        state["meta_params"], state["opt_state"], batch, rng,
        model=model.vos, cfg=cfg, tx=tx, mesh=mesh)
    return {"meta_params": mp, "opt_state": opt,
            "step": state["step"] + 1}, metrics

  return train_loop.jit_update(update, mesh)


def parent_stage_config(config: ml_collections.ConfigDict
                        ) -> ml_collections.ConfigDict:
  """The config of the parent stage: OSVOS training of the same model with
  `config.parent`, its own step count and batch size, nothing restored."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.train.num_steps = config.parent.num_steps
    c.train.batch_size = config.parent.batch_size
    c.train.checkpoint_every = min(c.train.checkpoint_every,
                                   config.parent.num_steps)
    c.restore = ""
  return c


def starting_params(config: ml_collections.ConfigDict, workdir: str, params):
  """The parameters meta-training starts from (see the module docstring)."""
  if config.restore or checkpoint.has_checkpoint(
      os.path.join(workdir, "checkpoints")):
    # The meta-training state is restored (resume, or config.restore): the
    # starting point is not read, so neither meta.init_from nor a parent
    # stage is loaded or trained.
    return params
  if config.meta.init_from:  # e.g. an OSVOS parent network with this model
    return checkpoint.restore_subtree(config.meta.init_from, "params", params)
  if config.parent.num_steps > 0:
    parent_dir = os.path.join(workdir, "parent")
    logging.info("Parent stage: %d OSVOS steps in %s",
                 config.parent.num_steps, parent_dir)
    params, _ = registry.get("osvos").train(parent_stage_config(config),
                                            parent_dir)
    return jax.device_get(params)
  return params


def train(config: ml_collections.ConfigDict, workdir: str):
  if config.train.init_from:
    raise ValueError("e-OSVOS starts its initialisation from meta.init_from "
                     "(a parent checkpoint), not train.init_from: set "
                     f"--config.meta.init_from={config.train.init_from}.")
  mesh = sharding.make_mesh(config.num_devices or None)
  model = setup.build_model(config, config.seed)
  frozen = frozen_mask(config, model)  # validates finetune.frozen_stages
  sampler = sampling.TaskSampler(setup.train_videos(config, workdir),
                                 config.meta.num_query, config.seed)
  logging.info("%d meta-training tasks (sequence, object)", len(sampler))

  params = starting_params(config, workdir, model.params)
  state = train_loop.run(
      config, workdir, mesh=mesh,
      init_state=lambda: train_loop.initial_state(
          initial_meta_params(config, params, frozen),
          make_optimizer(config, frozen), mesh,
          key="meta_params"),
      update=make_update(config, model, mesh),
      sample=train_loop.batch_sampler(sampler, config.train.batch_size),
      items_per_step=config.train.batch_size)
  return state["meta_params"], model


def load_segmenter(config: ml_collections.ConfigDict, workdir: str,
                   trained=None) -> video_lib.BoundSegmenter:
  """The meta-learned init and rates (`trained` = `(meta_params, model)` as
  `train` returned it, else restored), bound to a test-time segmenter."""
  meta_params, model = trained or (None,
                                   setup.build_model(config, config.seed))
  frozen = frozen_mask(config, model)
  if meta_params is None:
    abstract = initial_meta_params(config, model.params)
    meta_params = checkpoint.restore_subtree(
        setup.trained_checkpoint(config, workdir), "meta_params", abstract)
  logging.info("Learned rates%s: %s",
               " (adapted layers)" if frozen is not None else "",
               lrs_lib.lr_summary(meta_params["lrs"], frozen))
  return video_lib.BoundSegmenter(
      setup.video_segmenter(config, model), meta_params["init"],
      meta_params["lrs"])
