"""What every memory-network method shares (STCN, one-shot, two-shot).

The network built from `config.memory`, the AdamW optimiser with a cosine
schedule, the parameters a run starts from (`train.init_from`, or the
synthetic pre-training stage of `config.pretrain`, trained here first), and
the propagation segmenter that evaluates a trained network.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from metavos.data import clips, labels
from metavos.memory import network, propagate, xmem
from metavos.methods import registry, setup, train_loop
from metavos.runtime import checkpoint, sharding

PRETRAIN_DIR = "pretrain"


# config.memory.network -> builder (memory config block, rngs) -> (fns,
# params); fns follow network.MemoryModel, so every trainer takes any of them.
NETWORKS = {"stcn": network.build, "xmem": xmem.build}


def build_network(config: ml_collections.ConfigDict
                  ) -> tuple[network.MemoryModel, network.Params]:
  """The memory network of `config.memory`, split: (fns, params)."""
  m = config.memory
  if m.network not in NETWORKS:
    raise ValueError(f"config.memory.network={m.network!r} is not a memory "
                     f"network; set it to one of {sorted(NETWORKS)}.")
  fns, params = NETWORKS[m.network](m, nnx.Rngs(config.seed))
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  logging.info("Memory network %s (%s/%s): %d parameters", m.network,
               m.key_backbone, m.value_backbone, n)
  return fns, params


def restore(config: ml_collections.ConfigDict, checkpoint_dir: str,
            build=build_network):
  """`(params, fns)` as a trainer returns them: the network of
  `build(config)` with its params restored from `checkpoint_dir`."""
  fns, init = build(config)  # resolves config.memory.input_norm
  setup.check_input_norm(config, checkpoint_dir)
  return checkpoint.restore_subtree(checkpoint_dir, "params", init), fns


def segmenter(config: ml_collections.ConfigDict,
              trained) -> propagate.MemorySegmenter:
  """A trained memory network `(params, fns)` bound to a propagation
  segmenter (metavos.memory.propagate)."""
  params, fns = trained
  return propagate.MemorySegmenter(
      fns, params, propagate.PropagateConfig.from_config(config.memory,
                                                     config.eval.input_size))


def load_segmenter(config: ml_collections.ConfigDict, workdir: str,
                   trained=None) -> propagate.MemorySegmenter:
  """A memory-network method's segmenter: `trained` as `train` returned it,
  else the network restored from the method's checkpoints
  (`registry.trained_checkpoint`: two-shot's phase 2, else the workdir's,
  else config.restore)."""
  if trained is None:
    trained = restore(config, registry.trained_checkpoint(config, workdir))
  return segmenter(config, trained)


def train_on_clips(config: ml_collections.ConfigDict, workdir: str,
                   clip_length: int, make_update, describe: str = ""):
  """The supervised and one-shot trainers' loop: the network, the label set
  (`<workdir>/labels.json`), clips of `clip_length` frames starting at
  labelled frames, and `make_update(config, fns, mesh, labelled_fraction)`
  through the shared `train_loop`. Returns `(params, fns)`."""
  mesh = sharding.make_mesh(config.num_devices or None)
  fns, params = build_network(config)
  videos = setup.train_videos(config, workdir)
  label_set, fraction = labels.setup_label_set(config.labels, workdir, videos)
  c = config.clip
  sampler = clips.ClipSampler(videos, clip_length, c.max_gap, c.max_objects,
                              config.seed, label_set, c.flip)
  logging.info("%d clip starts%s", len(sampler), describe)
  tx = make_optimizer(config)
  state = train_loop.run(
      config, workdir, mesh=mesh,
      init_state=lambda: train_loop.initial_state(params, tx, mesh),
      update=make_update(config, fns, mesh, fraction),
      sample=train_loop.batch_sampler(sampler, config.train.batch_size),
      items_per_step=config.train.batch_size,
      init_from=starting_checkpoint(config, workdir))
  return state["params"], fns


def make_optimizer(config: ml_collections.ConfigDict):
  """AdamW with a cosine schedule and gradient clipping; the key encoder's
  first `memory.frozen_key_stages` stages get no update at all (no weight
  decay either)."""
  o = config.optim
  rate = optax.cosine_decay_schedule(o.lr, config.train.num_steps,
                                     alpha=o.final_lr_fraction)
  tx = optax.chain(optax.clip_by_global_norm(o.grad_clip),
                   optax.adamw(rate, weight_decay=o.weight_decay))
  if not config.memory.frozen_key_stages:
    return tx
  return train_loop.freeze(
      tx, lambda params: network.frozen_mask(params, config.memory))


def pretrain_stage_config(config: ml_collections.ConfigDict
                          ) -> ml_collections.ConfigDict:
  """The config of the synthetic pre-training stage (`config.pretrain`):
  supervised STCN on fully labelled synthetic videos, with the run's network
  and optimiser, nothing restored."""
  p = config.pretrain
  c = config.copy_and_resolve_references()
  steps = p.synthetic_steps
  with c.unlocked():
    c.method, c.mode, c.seed, c.restore = "stcn", "train", p.seed, ""
    c.data = ml_collections.ConfigDict(dict(
        kind="davis", root="", year=2017, resolution="480p",
        train_split="train", split="val", max_eval_videos=0,
        synthetic=dict(num_videos=p.num_videos, num_frames=p.num_frames,
                       height=p.image_size[0], width=p.image_size[1],
                       max_objects=p.max_objects, seed=p.seed),
        loader=config.data.loader.to_dict()))  # the run's input stream
    c.labels.kind = "all"
    c.clip.length, c.clip.max_gap, c.clip.flip = 3, 5, True
    c.clip.max_objects = p.max_objects
    c.clip.static_frames = False
    c.clip.augment.enabled = False
    c.train.num_steps = steps
    c.train.batch_size = p.batch_size
    c.train.image_size = tuple(p.image_size)
    c.train.init_from = ""
    c.train.checkpoint_every = min(c.train.checkpoint_every, steps)
    c.loss.start_step, c.loss.end_step = steps // 6, steps * 2 // 3
    c.pretrain.synthetic_steps = 0
  return c


def starting_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        run_dir: str | None = None) -> str:
  """The checkpoint whose params start a memory-network run: train.init_from
  if set, else the synthetic pre-training stage's (trained here first, in
  `<workdir>/pretrain`, resumed if interrupted), else "" (random init).
  Nothing is trained when the run (in `run_dir`, default `workdir`) resumes
  from its own checkpoints or restores config.restore."""
  if config.train.init_from:
    return config.train.init_from
  steps = config.pretrain.synthetic_steps if "pretrain" in config else 0
  if steps <= 0 or config.restore or checkpoint.has_checkpoint(
      os.path.join(run_dir or workdir, "checkpoints")):
    return ""
  stage_dir = config.pretrain.workdir or os.path.join(workdir, PRETRAIN_DIR)
  logging.info("Pre-training stage: %d supervised steps on synthetic videos "
               "in %s", steps, stage_dir)
  stage = pretrain_stage_config(config)
  with _single_writer(stage_dir):
    registry.get(stage.method).train(stage, stage_dir)
  return os.path.join(stage_dir, "checkpoints")


@contextlib.contextmanager
def _single_writer(directory: str):
  """One process at a time trains a shared stage directory (later ones find
  it finished and only restore it). Multi-host runs train it together, so
  there the lock is skipped (a host waiting on another would deadlock)."""
  if jax.process_count() > 1:
    yield
    return
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, ".lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
