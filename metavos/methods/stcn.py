"""STCN: a memory network trained fully supervised on short clips.

train: clips of `clip.length` (3) frames from the label set (here every
annotated frame); the first frame's masks go into memory, frames 1 and 2 are
predicted in turn from memory (frame 1 joins memory with its own predicted
soft masks) and scored against their labels with bootstrapped
cross-entropy. Training runs through the shared `train_loop` (sharding,
resume, checkpoints, metrics); the label set is written to
`<workdir>/labels.json` and its labelled fraction goes into every metrics
line.
evaluate: masks are propagated from the annotated frame(s) through memory
(metavos.memory.propagate), scored by the shared `eval_loop`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from metavos.data import clips, labels
from metavos.memory import chain, clip_augment, losses, network, propagate
from metavos.methods import eval_loop, osvos, setup, train_loop
from metavos.runtime import checkpoint, sharding


def build_network(config: ml_collections.ConfigDict
                  ) -> tuple[network.MemoryFns, network.Params]:
  """The memory network of `config.memory`, split: (fns, params)."""
  fns, params = network.build(config.memory, nnx.Rngs(config.seed))
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  logging.info("Memory network %s/%s: %d parameters",
               config.memory.key_backbone, config.memory.value_backbone, n)
  return fns, params


def make_optimizer(config: ml_collections.ConfigDict):
  o = config.optim
  rate = optax.cosine_decay_schedule(o.lr, config.train.num_steps,
                                     alpha=o.final_lr_fraction)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip),
                     optax.adamw(rate, weight_decay=o.weight_decay))


clip_loss = chain.supervised_clip_loss


def make_update(config, fns: network.MemoryFns, mesh, labelled_fraction):
  tx = make_optimizer(config)
  b = config.loss
  loss_fn = functools.partial(clip_loss, fns=fns, unroll=setup.unroll(config),
                              remat=config.memory.remat)
  aug = clip_augment.from_clip_config(config.clip)
  static = config.clip.get("static_frames", False)
  if static and aug is None:
    raise ValueError("clip.static_frames repeats each clip's first frame; "
                     "without motion there is nothing to learn: set "
                     "--config.clip.augment.enabled=True.")

  def update(state, batch, rng):
    if static:
      batch = clip_augment.static_batch(batch)
    if aug is not None:  # The only randomness of supervised clip training.
      batch = clip_augment.augment_batch(rng, batch, aug)
    p = losses.bootstrap_fraction(state["step"], b.start_step, b.end_step,
                                  b.final_p)
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], batch, p)
    updates, opt = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "bootstrap_p": p,
               "grad_norm": optax.tree.norm(grads),
               "labelled_fraction": jnp.float32(labelled_fraction)}
    return {"params": params, "opt_state": opt,
            "step": state["step"] + 1}, metrics

  return train_loop.jit_update(update, mesh)


PRETRAIN_DIR = "pretrain"


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
                       max_objects=p.max_objects, seed=p.seed)))
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
  steps = config.get("pretrain", {}).get("synthetic_steps", 0)
  if steps <= 0 or config.restore or checkpoint.has_checkpoint(
      os.path.join(run_dir or workdir, "checkpoints")):
    return ""
  stage_dir = config.pretrain.get("workdir", "") or os.path.join(
      workdir, PRETRAIN_DIR)
  logging.info("Pre-training stage: %d supervised steps on synthetic videos "
               "in %s", steps, stage_dir)
  with _single_writer(stage_dir):
    train(pretrain_stage_config(config), stage_dir)
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


def train(config: ml_collections.ConfigDict, workdir: str):
  """Trains on clips; returns (params, fns)."""
  mesh = sharding.make_mesh(config.num_devices or None)
  fns, params = build_network(config)
  videos = setup.train_videos(config, workdir)
  label_set, fraction = labels.setup_label_set(config.labels, workdir, videos)
  c = config.clip
  sampler = clips.ClipSampler(videos, c.length, c.max_gap, c.max_objects,
                              config.seed, label_set, c.flip)
  logging.info("%d clip starts", len(sampler))

  state = train_loop.run(
      config, workdir, mesh=mesh,
      init_state=lambda: train_loop.initial_state(
          params, make_optimizer(config), mesh),
      update=make_update(config, fns, mesh, fraction),
      sample=train_loop.batch_sampler(sampler, config.train.batch_size),
      items_per_step=config.train.batch_size,
      init_from=starting_checkpoint(config, workdir))
  return state["params"], fns


def load_segmenter(config: ml_collections.ConfigDict, workdir: str,
                   params=None) -> propagate.MemorySegmenter:
  """The trained network bound to a propagation segmenter (params from the
  workdir's checkpoints, else config.restore, unless given)."""
  fns, init = build_network(config)
  if params is None:
    params = checkpoint.restore_subtree(
        setup.trained_checkpoint(config, workdir), "params", init)
  return propagate.MemorySegmenter(
      fns, params, propagate.PropagateConfig.from_config(config.memory,
                                                     config.eval.input_size))


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             params=None) -> dict:
  seg = load_segmenter(config, workdir, params)
  segment = lambda video, rng: seg.segment(
      video, rng, osvos.annotated_frames(config, video))
  return eval_loop.evaluate_split(config, workdir, segment)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  if config.mode == "evaluate":
    return evaluate(config, workdir)
  params, _ = train(config, workdir)
  return evaluate(config, workdir, params)
