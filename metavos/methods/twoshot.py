"""Two-shot VOS (Yan et al., CVPR 2023): a memory network trained from two
labelled frames per training video.

Three stages, selected by `config.twoshot.stage` ("all" runs them in turn);
each reads what the previous one left in the workdir (or in
`config.twoshot.from_workdir`):

  phase1  `<workdir>/phase1/`. Until `warmup_steps`, supervised pairs of
          labelled frames; after, clips start at a labelled frame and the
          other frames are supervised by an EMA teacher's predictions where
          its confidence is >= `teacher_threshold` (ignored elsewhere); with
          `anchor_pairs`, that many labelled pairs join every batch, so the
          real labels keep supervising. The teacher is part of the
          checkpointed state.
  pseudo  `<workdir>/pseudo_labels/`: the phase-1 model propagates from each
          labelled frame forward and backward; each frame keeps the
          prediction of its nearest labelled frame. Written as a DAVIS root
          and scored against the real masks (`pseudo_label_metrics.json`).
  phase2  `<workdir>/phase2/`: training on every frame with the
          pseudo-labels; from `self_label_step` on, the labels of unlabelled
          frames are replaced in the batch by the student's predictions
          where it is >= `self_label_threshold` confident.

Then the phase-2 network is evaluated like every method (`<workdir>/results`,
`metrics.json`, `timing.json`). Everything network-specific goes through the
memory-network interface (`fns`: encode_key / encode_value / decode /
predict / segment / new_memory / memorize, and `chain.run_chain`), so any
implementation of it trains here: pass its builder as `build`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from metavos import evaluate as evaluate_lib
from metavos.data import (clips, davis, labels, pipeline, sampling,
                          twoshot_clips)
from metavos.memory import (clip_augment, losses, pseudo_labels,
                            twoshot_losses)
from metavos.memory import teacher as teacher_lib
from metavos.methods import memory_networks, registry, setup, train_loop
from metavos.metrics import davis as davis_metrics
from metavos.runtime import checkpoint, files, progress, sharding

# config -> (fns, params): the memory network to train (default STCN's).
Builder = Callable[[ml_collections.ConfigDict], tuple[Any, Any]]
STAGES = ("all", "phase1", "pseudo", "phase2")
PHASE1, PHASE2, PSEUDO = "phase1", "phase2", "pseudo_labels"
PSEUDO_METRICS = "pseudo_label_metrics.json"


# ----------------------------------------------------------------- updates


def make_update(config: ml_collections.ConfigDict, loss_fn: Callable,
                mesh, labelled_fraction: float, *, ema: bool):
  """The jitted train step of any stage: AdamW on `params`, and with `ema`
  the teacher update after it.

  Args:
    config: the stage's config (optim, loss schedule, train.num_steps).
    loss_fn: `(params, state, batch, p) -> (loss, aux metrics)`.
    mesh: the data mesh.
    labelled_fraction: logged with every metrics line.
    ema: whether the state holds a "teacher" to update.
  """
  tx = memory_networks.make_optimizer(config)
  b, alpha_max = config.loss, config.twoshot.ema_max
  aug = clip_augment.from_clip_config(config.clip)

  def update(state, batch, rng):
    if aug is not None:  # The teacher sees the same augmented frames.
      batch = augment(rng, batch, aug)
    p = losses.bootstrap_fraction(state["step"], b.start_step, b.end_step,
                                  b.final_p)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], state, batch, p)
    updates, opt = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new = {"params": params, "opt_state": opt, "step": state["step"] + 1}
    metrics = {"loss": loss, "bootstrap_p": p,
               "grad_norm": optax.tree.norm(grads),
               "labelled_fraction": jnp.float32(labelled_fraction), **aux}
    if ema:
      new["teacher"] = teacher_lib.ema_update(state["teacher"], params,
                                              state["step"], alpha_max)
      metrics["ema_alpha"] = teacher_lib.ema_alpha(state["step"], alpha_max)
    return new, metrics

  return train_loop.jit_update(update, mesh)


def augment(rng, batch: dict, aug) -> dict:
  """`clip_augment.augment_batch` on a clip batch, or on each part (its own
  key) of a `{"clips", "pairs"}` batch (twoshot_clips.WithLabelledPairs)."""
  if "frames" in batch:
    return clip_augment.augment_batch(rng, batch, aug)
  return {name: clip_augment.augment_batch(jax.random.fold_in(rng, i), part,
                                           aug)
          for i, (name, part) in enumerate(sorted(batch.items()))}


def make_losses(config, fns) -> dict[str, Callable]:
  """The loss of each training section: "warmup", "teacher" (phase 1; with
  `twoshot.anchor_pairs`, plus the warm-up loss of that many labelled pairs)
  and "self_label" (phase 2), for the network functions `fns`."""
  t, common = config.twoshot, {"fns": fns, "unroll": setup.unroll(config),
                               "remat": config.memory.remat}
  warmup = functools.partial(twoshot_losses.warmup_loss, **common)
  teacher = functools.partial(
      twoshot_losses.teacher_loss, threshold=t.teacher_threshold,
      teacher_memory=t.teacher_memory, **common)
  if t.anchor_pairs:
    teacher = functools.partial(twoshot_losses.with_labelled_pairs,
                                teacher=teacher, warmup=warmup)
  return {
      "warmup": warmup, "teacher": teacher,
      "self_label": functools.partial(
          twoshot_losses.self_label_loss, threshold=t.self_label_threshold,
          start_step=t.self_label_step, **common)}


# ----------------------------------------------------------------- helpers


def _source(config, workdir: str) -> str:
  """The run whose earlier stages a later stage reads."""
  return config.twoshot.from_workdir or workdir


def frame_fraction(label_set, videos) -> float:
  """Labelled frames over ALL frames of `videos`: the two-shot labelled
  fraction, logged by both phases. On fully annotated data it equals
  `labels.labelled_fraction`; on a copy whose unlabelled masks were deleted
  that one would count only the annotated (= labelled) frames."""
  total = sum(len(v.annotated) for v in videos)
  names = {v.name for v in videos}
  used = sum(len(set(f)) for n, f in label_set.items() if n in names)
  return used / max(total, 1)


def _read_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise ValueError(f"{path} is missing: the label set is written by "
                     "stage 'phase1'. Run it first, or point "
                     "config.twoshot.from_workdir at a run that did.") from e


def _stage_config(config, num_steps: int) -> ml_collections.ConfigDict:
  """`config` with the stage's step count; its restore is handled here
  (train_loop must not restore the whole state from config.restore)."""
  c = copy.deepcopy(config)
  c.train.num_steps, c.restore = num_steps, ""
  return c


def _train_split(config, root: str):
  """The training split; DAVIS-layout roots may have sparse masks (objects
  first seen in any labelled frame)."""
  d = config.data
  if d.kind == "davis":
    return davis.DavisDataset(root, d.year, d.train_split, d.resolution,
                              allow_new_objects=True)
  return setup.open_split(config, root, d.train_split)


def _prepare(config, ds) -> list[sampling.TrainVideo]:
  return pipeline.index_videos(ds, tuple(config.train.image_size),
                               config.data.loader.threads)


def init_state(params, tx, mesh, with_teacher: bool):
  """A fresh replicated train state, with an EMA teacher equal to params
  (its own copy: teacher and student never share a buffer)."""
  extra = {"teacher": params} if with_teacher else {}
  return train_loop.initial_state(params, tx, mesh, **extra)


def teacher_sampler(config, videos, label_set):
  """Phase 1's clips after the warm-up: clips from the labelled frames, and
  with `twoshot.anchor_pairs` that many labelled pairs beside them."""
  c, n = config.clip, config.twoshot.anchor_pairs
  teacher = clips.ClipSampler(videos, c.length, c.max_gap, c.max_objects,
                              config.seed, label_set, c.flip)
  if not n:
    return teacher
  pairs = twoshot_clips.warmup_sampler(
      videos, label_set, c.max_objects,
      config.seed + twoshot_clips.PAIR_SEED_OFFSET, c.flip)
  return twoshot_clips.WithLabelledPairs(teacher, pairs, n)


# ----------------------------------------------------------------- stages


def phase1(config: ml_collections.ConfigDict, workdir: str,
           build: Builder = memory_networks.build_network):
  """Warm-up, then teacher-supervised training; returns the final state."""
  mesh = sharding.make_mesh(config.num_devices or None)
  fns, params = build(config)
  root = setup.data_root(config, workdir)
  videos = _prepare(config, _train_split(config, root))
  label_set, _ = labels.setup_label_set(config.labels, workdir, videos)
  fraction = frame_fraction(label_set, videos)
  logging.info("Two-shot: %.4f of the training frames are labelled.",
               fraction)
  c, t = config.clip, config.twoshot
  total, warm = config.train.num_steps, min(t.warmup_steps,
                                            config.train.num_steps)
  run_dir = os.path.join(workdir, PHASE1)
  full = _stage_config(config, total)  # The optimiser spans both sections.
  tx = memory_networks.make_optimizer(full)
  init = lambda: init_state(params, tx, mesh, True)
  loss_fns = make_losses(config, fns)
  init_from = memory_networks.starting_checkpoint(config, workdir, run_dir)
  state = None
  # Two sections of one run (one checkpoint directory, one step count): a
  # resumed run skips through the finished section without a step.
  sections = [
      (0, warm, "warmup", lambda: twoshot_clips.warmup_sampler(
          videos, label_set, c.max_objects, config.seed, c.flip)),
      (warm, total, "teacher", lambda: teacher_sampler(
          config, videos, label_set))]
  for start, end, name, make_sampler in sections:
    if end <= start:
      continue  # No warm-up, or no step after it.
    sampler = make_sampler()
    logging.info("Two-shot phase 1 (%s) to step %d: %d clip starts", name,
                 end, len(sampler))
    state = train_loop.run(
        _stage_config(config, end), run_dir, mesh=mesh, init_state=init,
        update=make_update(full, loss_fns[name], mesh, fraction, ema=True),
        sample=train_loop.batch_sampler(sampler, config.train.batch_size),
        items_per_step=config.train.batch_size,
        init_from=init_from, init_keys=("params", "teacher"))
  return state


def pseudo(config: ml_collections.ConfigDict, workdir: str,
           build: Builder = memory_networks.build_network) -> dict:
  """Pseudo-labels every training video with the phase-1 model.

  Returns:
    The pseudo-labels' DAVIS metrics against the real masks of
    `config.twoshot.pseudo_score_root` (default the data root); {} when
    those are not fully annotated.
  """
  src, t, d = _source(config, workdir), config.twoshot, config.data
  fns, init = build(config)
  params = checkpoint.restore_subtree(os.path.join(src, PHASE1, "checkpoints"),
                                      t.pseudo_model, init)
  seg = memory_networks.segmenter(config, (params, fns))
  root = setup.data_root(config, workdir)
  ds = _train_split(config, root)
  label_path = os.path.join(src, labels.FILE_NAME)
  out = pseudo_labels.PseudoRoot(pathlib.Path(workdir) / PSEUDO,
                                 d.resolution, d.year, d.train_split)
  score = (_train_split(config, t.pseudo_score_root)
           if t.pseudo_score_root else None)
  evaluator = davis_metrics.DavisEvaluator()
  kept, bar = [], progress.Progress(len(ds.sequences), "pseudo-label")
  raw = _read_json(label_path)
  unknown = sorted(set(raw) - set(ds.sequences))
  if unknown:
    raise ValueError(f"{label_path}: sequences {unknown[:5]} are not in the "
                     f"training split {d.train_split!r}; fix the label set.")
  for i, name in enumerate(ds.sequences):
    video = ds.load(name)  # One at a time: full-size videos are large.
    frames = labels.validate({name: raw.get(name, [])}, [video],
                             label_path)[name]
    pred = pseudo_labels.pseudo_label_video(seg, video, frames)
    out.write_video(video, pred, pathlib.Path(root) / "JPEGImages" /
                    d.resolution / name)
    if pseudo_labels.has_object(pred):
      kept.append(name)
    else:  # Nothing to train on; the reader would reject it.
      logging.warning("%s: no object in its pseudo-labels; left out of "
                      "the phase-2 split.", name)
    gt = (video if score is None else
          evaluate_lib.load_ground_truth(score, name))
    if gt.annotated.all():  # Sparse masks cannot be scored.
      evaluator.add_video(name, gt.masks, pred, gt.object_ids)
    bar.update(i + 1, extra=name)
  metrics = evaluator.result() if len(evaluator) == len(ds.sequences) else {}
  if metrics:
    files.atomic_write_text(os.path.join(workdir, PSEUDO_METRICS),
                            json.dumps(metrics, indent=2))
    logging.info("Pseudo-labels vs real masks (%s): J&F %.4f", d.train_split,
                 metrics["global"]["J&F-Mean"])
  out.finish(kept)
  return metrics


def phase2(config: ml_collections.ConfigDict, workdir: str,
           build: Builder = memory_networks.build_network):
  """Training on the pseudo-labelled videos; returns `(params, fns)`."""
  src, t, c = _source(config, workdir), config.twoshot, config.clip
  mesh = sharding.make_mesh(config.num_devices or None)
  fns, params = build(config)
  root = pseudo_labels.PseudoRoot(pathlib.Path(src) / PSEUDO,
                                  config.data.resolution, config.data.year,
                                  config.data.train_split)
  if not root.is_complete():
    raise ValueError(f"two-shot phase 2 needs the pseudo-labels of stage "
                     f"'pseudo': {root.split_file} is missing. Run "
                     "--config.twoshot.stage=pseudo (or all) first.")
  videos = _prepare(config, root.open())
  # Videos with no pseudo-labelled object are not in the phase-2 split.
  path = os.path.join(src, labels.FILE_NAME)
  names = {v.name for v in videos}
  label_set = labels.validate(
      {k: f for k, f in _read_json(path).items() if k in names}, videos, path)
  fraction = frame_fraction(label_set, videos)
  sampler = twoshot_clips.RealLabelFlags(clips.ClipSampler(
      videos, c.length, c.max_gap, c.max_objects, config.seed, None, c.flip),
      label_set)
  stage = _stage_config(config, t.phase2_steps)
  if t.phase2_init == "phase1":
    params = checkpoint.restore_subtree(
        os.path.join(src, PHASE1, "checkpoints"), "params", params)
  elif t.phase2_init != "scratch":
    raise ValueError("config.twoshot.phase2_init must be 'phase1' or "
                     f"'scratch', got {t.phase2_init!r}.")
  tx = memory_networks.make_optimizer(stage)
  init = lambda: init_state(params, tx, mesh, False)
  state = train_loop.run(
      stage, os.path.join(workdir, PHASE2), mesh=mesh, init_state=init,
      update=make_update(stage, make_losses(config, fns)["self_label"], mesh,
                         fraction, ema=False),
      sample=train_loop.batch_sampler(sampler, config.train.batch_size),
      items_per_step=config.train.batch_size)
  return state["params"], fns


# ------------------------------------------------------ method protocol


def trained_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The phase-2 checkpoints of this workdir, else `config.restore` (a
  two-shot workdir or any checkpoint path)."""
  for path in (os.path.join(workdir, PHASE2, "checkpoints"),
               os.path.join(config.restore, PHASE2, "checkpoints")
               if config.restore else ""):
    if path and checkpoint.has_checkpoint(path):
      return path
  return setup.trained_checkpoint(config, workdir)


# The phase-2 network (from `trained_checkpoint`) propagates masks.
load_segmenter = memory_networks.load_segmenter


def train(config: ml_collections.ConfigDict, workdir: str,
          build: Builder = memory_networks.build_network):
  """Runs the stages of `config.twoshot.stage` ("all" runs them in turn).

  Returns:
    `(params, fns)` of the phase-2 network, or `registry.NOT_EVALUATED` for
    the stages that end before phase 2.
  """
  stage = config.twoshot.stage
  if stage not in STAGES:
    raise ValueError(f"config.twoshot.stage must be one of {STAGES}, got "
                     f"{stage!r}.")
  if stage in ("all", "phase1"):
    phase1(config, workdir, build)
  if stage in ("all", "pseudo"):
    root = pseudo_labels.PseudoRoot(pathlib.Path(workdir) / PSEUDO,
                                    config.data.resolution, config.data.year,
                                    config.data.train_split)
    if stage == "all" and root.is_complete():
      logging.info("Pseudo-labels already complete in %s; skipping.",
                   root.root)
    else:
      pseudo(config, workdir, build)
  if stage not in ("all", "phase2"):
    return registry.NOT_EVALUATED
  return phase2(config, workdir, build)
