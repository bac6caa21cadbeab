"""Segment a video by fine-tuning on its annotated frame(s), all objects at once.

Shared by OSVOS (hand-designed schedule) and e-OSVOS (meta-learned init and
rates), for any model behind `metavos.models.interface.VOSModel`. All objects
of a video are adapted together in one vmapped call; the frames are then
segmented in order with the adapted parameters, each object carrying its
model's state (nothing for a dense segmenter, the previous box for Mask
R-CNN) from frame to frame, and the per-object probabilities are merged by
argmax, with background wherever the highest probability is below
`bg_threshold`.

Online adaptation (e-OSVOS-T-OnA): every `online_interval` frames the
parameters are reset to the post-first-frame ones and `online_steps` steps are
run on the annotated frame(s) plus the most recent predicted masks.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metavos.data import sampling
from metavos.data.types import VOID, Video
from metavos.finetune import contour as contour_lib
from metavos.finetune import inner_loop, losses, support
from metavos.models import interface
from metavos.runtime import chunking, config_fields, platform


# fold_in data of the prediction keys (box jitter), apart from adaptation's.
_PREDICT_STREAM = 0x7FFE


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """Test-time fine-tuning schedule (see configs/*.py `finetune` fields)."""
  num_steps: int = 10
  momentum: float = 0.0
  loss: str = "lovasz_hinge"
  copies: int = 3
  augment: tuple[tuple[str, Any], ...] | None = None
  unroll: bool | int = True
  steps_per_call: int = 10
  online_interval: int = 0
  online_steps: int = 10
  online_recent: int = 1
  frames_per_call: int = 8
  objects_per_call: int = 0
  input_size: tuple[int, int] | None = None
  bg_threshold: float = 0.5
  frozen_stages: int = 0
  bank: int = 16
  max_grad_norm: float = 0.0
  contour: str = ""
  contour_cell: int = 8
  contour_threshold: float = 0.8
  undo_balance: bool = False
  optimizer: str = "sgd"

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict, unroll: bool | int,
                  input_size: tuple[int, ...] = ()) -> "FinetuneConfig":
    """From `config.finetune`; `input_size` is `config.eval.input_size`."""
    return config_fields.from_block(
        cls, cfg, "config.finetune",
        # The rate and the annotated frames are the method's and
        # evaluation's (metavos.methods).
        other_keys=("lr", "num_annotated", "annotated_frames"),
        augment=tuple(sorted(dict(cfg.augment).items())) if cfg.augment
        else None,
        unroll=unroll,
        objects_per_call=platform.items_per_call(cfg.objects_per_call),
        input_size=tuple(input_size) if input_size else None)


def merge_objects(probs: np.ndarray, object_ids: Sequence[int],
                  bg_threshold: float = 0.5) -> np.ndarray:
  """Merges (K, ..., H, W) per-object probabilities into an id map.

  Each pixel takes the object of highest probability, or 0 (background) when
  that probability is below `bg_threshold`.
  """
  ids = np.asarray(object_ids, np.uint8)[np.argmax(probs, axis=0)]
  return np.where(probs.max(axis=0) >= bg_threshold, ids, 0).astype(np.uint8)


def _broadcast(tree, k: int):
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (k,) + x.shape), tree)


def _augment(cfg: FinetuneConfig) -> dict | None:
  return dict(cfg.augment) if cfg.augment else None


# The jitted pieces of VideoSegmenter: pure functions of a static (model,
# cfg), so segmenters of the same model and settings share compilations and
# none is kept alive by the jit cache (as metavos.memory.propagate).


@functools.partial(jax.jit, static_argnames=("model", "cfg"))
def _bank(params, images, masks, valid, keys, *, model: interface.VOSModel,
          cfg: FinetuneConfig):
  """Frozen-stage fine-tuning's support set, computed once: `bank`
  augmented copies of each support frame through the frozen stages.
  vmapped over objects; returns (cache, masks, valid), N * bank each."""
  prefix_fn, _ = model.split(cfg.frozen_stages)
  return jax.vmap(functools.partial(
      support.support_bank, prefix_fn, bank=cfg.bank,
      augment=_augment(cfg)))(params, images, masks, valid, keys)


@functools.partial(jax.jit,
                   static_argnames=("model", "cfg", "num_steps", "draw"))
def _adapt_cached(params, lrs, cache, masks, valid, keys, velocity, *,
                  model: interface.VOSModel, cfg: FinetuneConfig,
                  num_steps: int, draw: int):
  """`_adapt` on a precomputed bank: each step draws `draw` of its entries
  and runs only the unfrozen layers (the frozen parameters get zero
  gradients: the suffix does not read them)."""
  _, suffix_fn = model.split(cfg.frozen_stages)
  pixel_loss = losses.get_loss(cfg.loss)

  def one(p, c, msk, val, key, vel):
    loss_fn = support.make_bank_loss(suffix_fn, pixel_loss, c, msk, val, draw)
    return inner_loop.adapt(loss_fn, p, lrs, key, num_steps,
                            momentum=cfg.momentum, first_order=True,
                            unroll=cfg.unroll,
                            max_grad_norm=cfg.max_grad_norm, velocity=vel,
                            optimizer=cfg.optimizer)

  return jax.vmap(one)(params, cache, masks, valid, keys, velocity)


@functools.partial(jax.jit, static_argnames=("model", "cfg", "num_steps"))
def _adapt(params, lrs, images, masks, valid, keys, velocity, *,
           model: interface.VOSModel, cfg: FinetuneConfig, num_steps: int):
  """vmapped over objects: params (K, ...), images (K, N, H, W, 3)."""
  loss = model.make_loss(losses.get_loss(cfg.loss))

  def one(p, img, msk, val, key, vel):
    loss_fn = support.make_support_loss(loss, img, msk, val,
                                        copies=cfg.copies,
                                        augment=_augment(cfg))
    return inner_loop.adapt(loss_fn, p, lrs, key, num_steps,
                            momentum=cfg.momentum, first_order=True,
                            unroll=cfg.unroll,
                            max_grad_norm=cfg.max_grad_norm, velocity=vel,
                            optimizer=cfg.optimizer)

  return jax.vmap(one)(params, images, masks, valid, keys, velocity)


@functools.partial(jax.jit, static_argnames=("model", "out_size"))
def _predict(params, states, frames, keys, *, model: interface.VOSModel,
             out_size: tuple[int, int]):
  """Probabilities for consecutive frames (B, h, w, 3), vmapped over the K
  objects' params, states and keys: (K, B, h, w) at the network's size,
  (K, B, H_out, W_out) at `out_size`, and the states after the last frame."""
  small, states = jax.vmap(
      lambda p, s, k: model.predict(p, s, frames, k))(params, states, keys)
  probs = small
  if small.shape[2:] != tuple(out_size):
    probs = jax.image.resize(small, small.shape[:2] + tuple(out_size),
                             "bilinear")
  return small, probs, states


class VideoSegmenter:
  """Fine-tunes on annotated frames and segments every frame of a video.

  The Python driver (chunking in time and over objects, online adaptation,
  the contour step); the compiled work is the module's pure functions of
  the static (model, cfg).
  """

  def __init__(self, model: interface.VOSModel, cfg: FinetuneConfig):
    self.model = model
    self.cfg = cfg
    self._aug = _augment(cfg)
    if cfg.frozen_stages and self._aug and cfg.bank < cfg.copies:
      raise ValueError(f"finetune.bank={cfg.bank} must be at least "
                       f"finetune.copies={cfg.copies}: each step draws "
                       "`copies` of the bank's augmented copies.")
    inner_loop.check_optimizer(cfg.optimizer)
    if cfg.undo_balance and cfg.loss not in losses.BALANCED_LOSSES:
      raise ValueError(f"finetune.undo_balance maps class-balanced "
                       f"probabilities back to the data's prior; the loss "
                       f"{cfg.loss!r} is not one of {losses.BALANCED_LOSSES}: "
                       "set --config.finetune.undo_balance=False.")
    if cfg.frozen_stages:
      if model.split is None:
        raise ValueError("finetune.frozen_stages > 0 needs a dense model "
                         "(fcn, osvos); the detector adapts every layer: "
                         "set finetune.frozen_stages=0.")
      model.split(cfg.frozen_stages)  # a bad stage count fails here
    self._snapper = (contour_lib.ContourSnapper.from_weights(
        cfg.contour, cfg.contour_cell, cfg.contour_threshold)
                     if cfg.contour else None)

  def adapt(self, params, lrs, images, masks, valid, rng, num_steps):
    """Adapts the K objects' params, `objects_per_call` objects per call.

    Returns:
      (params (K, ...), per-step support losses (K, num_steps)); the same
      for any `objects_per_call` (each object's keys do not depend on it).
    """
    k = images.shape[0]
    return chunking.chunked_vmap(
        lambda p, i, m, v, objects: self._adapt_objects(
            p, lrs, i, m, v, rng, num_steps, objects, k),
        self.cfg.objects_per_call, params, images, masks, valid, np.arange(k))

  def _adapt_objects(self, params, lrs, images, masks, valid, rng, num_steps,
                     objects: np.ndarray, k: int):
    """Chunked in time: at most `steps_per_call` steps per jitted call.

    Splitting long runs (T = 100, 1000) keeps compile time bounded when the
    inner loop is unrolled; the momentum buffer is carried across chunks.
    """
    cfg, static = self.cfg, {"model": self.model, "cfg": self.cfg}
    velocity = jax.vmap(functools.partial(
        inner_loop.init_state, optimizer=cfg.optimizer,
        momentum=cfg.momentum))(params)
    if cfg.frozen_stages:  # the frozen stages run once, here
      bank_keys = jax.random.split(
          jax.random.fold_in(rng, support.BANK_STREAM), k)[objects]
      cache, masks, valid = _bank(params, images, masks, valid, bank_keys,
                                  **static)
      draw = images.shape[1] * (cfg.copies if self._aug else 1)
    done, step_losses = 0, []
    while done < num_steps:
      n = min(cfg.steps_per_call, num_steps - done)
      keys = jax.random.split(jax.random.fold_in(rng, done), k)[objects]
      if cfg.frozen_stages:
        params, velocity, ls = _adapt_cached(
            params, lrs, cache, masks, valid, keys, velocity, num_steps=n,
            draw=draw, **static)
      else:
        params, velocity, ls = _adapt(params, lrs, images, masks, valid,
                                      keys, velocity, num_steps=n, **static)
      step_losses.append(ls)
      done += n
    if not step_losses:  # num_steps = 0: the starting parameters as they are
      return params, jnp.zeros((images.shape[0], 0), jnp.float32)
    return params, jnp.concatenate(step_losses, axis=1)

  def segment(self, params, lrs, video: Video, rng: jax.Array,
              annotated_frames: Sequence[int] | None = None):
    """Segments `video` from its annotated frame(s).

    Args:
      params: initialisation (parent network or meta-learned init).
      lrs: learning-rate tree (see metavos.finetune.lrs).
      video: the video; masks are read only at the support frames.
      rng: PRNG key.
      annotated_frames: frame indices whose ground truth is given. None =
        each object's first annotated frame (the one-shot protocol).

    Returns:
      (pred, stats): (T, H, W) uint8 object ids and a dict of timings.
    """
    t0 = time.perf_counter()
    probs, support_frames, stats = self.predict(params, lrs, video, rng,
                                                annotated_frames)
    pred = merge_objects(probs, video.object_ids, self.cfg.bg_threshold)
    if self._snapper is not None:  # OSVOS' contour step
      t1 = time.perf_counter()
      pred = self._snapper.snap(video.frames, pred)
      stats["contour_seconds"] = time.perf_counter() - t1
    for ix in support_frames:  # Given frames keep their given masks.
      pred[ix] = np.where(video.masks[ix] == VOID, 0, video.masks[ix])
    seconds = time.perf_counter() - t0
    stats.update(seconds=seconds, fps=video.num_frames / seconds,
                 support_frames=[int(t) for t in support_frames])
    return pred, stats

  def predict(self, params, lrs, video: Video, rng: jax.Array,
              annotated_frames: Sequence[int] | None = None):
    """Per-object probabilities after fine-tuning on the annotated frame(s).

    Returns:
      (probs, support_frames, stats): probs (K, T, H, W) float32 at the
      video's size (0 before an object's first frame), the set of frames
      whose masks were used, and a dict of timings.
    """
    cfg = self.cfg
    t0 = time.perf_counter()
    out_size = video.size
    in_size = cfg.input_size or out_size
    frames = sampling.resize_frames(video.frames, in_size).astype(
        np.float32) / 255.0
    masks = sampling.resize_masks(video.masks, in_size)
    objs = list(video.object_ids)
    if annotated_frames is None:
      sup_idx = [[video.first_frame[o]] for o in objs]
    else:
      sup_idx = [list(annotated_frames) for _ in objs]
    sup_img = np.stack([frames[ix] for ix in sup_idx])
    sup_msk = np.stack([(masks[ix] == o).astype(np.float32)
                        for o, ix in zip(objs, sup_idx)])
    sup_val = np.stack([masks[ix] != VOID for ix in sup_idx])
    k = len(objs)
    first_params, ft_losses = self.adapt(
        _broadcast(params, k), lrs, sup_img, sup_msk, sup_val, rng,
        cfg.num_steps)
    jax.block_until_ready(first_params)
    t_ft = time.perf_counter() - t0

    probs = np.zeros((k, video.num_frames) + out_size, np.float32)
    small = (np.zeros((k, video.num_frames) + tuple(in_size), np.float32)
             if cfg.online_interval else None)
    cur = first_params
    # Per-object memory (e.g. the previous box) starts from the object's
    # first support mask and is reset there when the object enters later.
    init_states = jax.vmap(self.model.init_state)(jnp.asarray(sup_msk[:, 0]))
    states = init_states
    starts = _object_starts(video, objs) if self.model.stateful else {}
    block = cfg.online_interval or video.num_frames
    ona_seconds = 0.0
    # Each object's foreground share in its annotated frame(s): the prior
    # the class-balanced loss divided out (losses.unbalance_probs).
    fg_share = np.clip((sup_msk * sup_val).sum(axis=(1, 2, 3))
                       / np.maximum(sup_val.sum(axis=(1, 2, 3)), 1),
                       1e-4, 1 - 1e-4)
    for start in range(0, video.num_frames, block):
      stop = min(start + block, video.num_frames)
      if cfg.online_interval and start > 0:
        t1 = time.perf_counter()
        cur = self._online(first_params, lrs, sup_img, sup_msk, sup_val,
                           frames, small, start, rng)
        jax.block_until_ready(cur)  # else the time is only the dispatch
        ona_seconds += time.perf_counter() - t1
      for b, e in _chunks(start, stop, cfg.frames_per_call, starts):
        if b in starts:
          states = _reset(states, init_states, starts[b])
        small_b, probs_b, states = self._predict_objects(
            cur, states, frames[b:e],
            jax.random.fold_in(jax.random.fold_in(rng, _PREDICT_STREAM), b),
            out_size)
        if cfg.undo_balance:
          small_b = losses.unbalance_probs(np.asarray(small_b), fg_share)
          probs_b = losses.unbalance_probs(np.asarray(probs_b), fg_share)
        probs[:, b:e] = np.asarray(probs_b)
        if cfg.online_interval:  # online adaptation reads recent predictions
          small[:, b:e] = np.asarray(small_b)
    for i, o in enumerate(objs):  # Objects do not exist before they enter.
      probs[i, :video.first_frame[o]] = 0.0
    stats = {"finetune_seconds": t_ft, "online_seconds": ona_seconds}
    if ft_losses.shape[1]:  # none without fine-tuning steps
      stats["final_support_loss"] = float(np.mean(ft_losses[:, -1]))
    return probs, sorted({t for idx in sup_idx for t in idx}), stats

  def _predict_objects(self, params, states, frames, rng, out_size):
    """`_predict` over the K objects, `objects_per_call` at a time."""
    keys = jax.random.split(rng, jax.tree.leaves(params)[0].shape[0])
    return chunking.chunked_vmap(
        lambda p, s, k: _predict(p, s, frames, k, model=self.model,
                                 out_size=tuple(out_size)),
        self.cfg.objects_per_call, params, states, keys)

  def _online(self, first_params, lrs, sup_img, sup_msk, sup_val, frames,
              small_probs, start, rng):
    """Re-adapts from the post-first-frame params on recent predictions."""
    r = self.cfg.online_recent
    recent = list(range(max(0, start - r), start))
    recent = [recent[0]] * (r - len(recent)) + recent  # static support size
    objs_probs = small_probs[:, recent]  # (K, r, h, w)
    winner = objs_probs.argmax(axis=0)[None] == np.arange(
        objs_probs.shape[0])[:, None, None, None]
    rec_msk = ((objs_probs >= self.cfg.bg_threshold) & winner).astype(
        np.float32)
    img = np.concatenate([sup_img, np.broadcast_to(
        frames[recent][None], (sup_img.shape[0],) + frames[recent].shape)], 1)
    msk = np.concatenate([sup_msk, rec_msk], 1)
    val = np.concatenate([sup_val, np.ones_like(rec_msk, bool)], 1)
    params, _ = self.adapt(first_params, lrs, img, msk, val,
                           jax.random.fold_in(rng, start),
                           self.cfg.online_steps)
    return params


def _object_starts(video: Video, objs: Sequence[int]) -> dict[int, np.ndarray]:
  """{frame: (K,) bool} for frames after 0 where some object enters."""
  starts = {}
  for i, o in enumerate(objs):
    t = video.first_frame[o]
    if t > 0:
      starts.setdefault(t, np.zeros(len(objs), bool))[i] = True
  return starts


def _chunks(start: int, stop: int, size: int, cuts) -> list[tuple[int, int]]:
  """[start, stop) in pieces of at most `size`, also cut at every frame in
  `cuts` (where an object's state is reset)."""
  bounds = sorted({*range(start, stop, size),
                   *(t for t in cuts if start < t < stop), stop})
  return list(zip(bounds[:-1], bounds[1:]))


def _reset(states, init_states, which: np.ndarray):
  """States of the objects in `which` (K,) go back to their initial ones."""
  def pick(s, s0):
    w = jnp.asarray(which).reshape((-1,) + (1,) * (s.ndim - 1))
    return jnp.where(w, s0, s)
  return jax.tree.map(pick, states, init_states)


@dataclasses.dataclass(frozen=True)
class BoundSegmenter:
  """A segmenter with its starting parameters and learning rates fixed.

  What every method hands to evaluation and frame suggestion:
  `segment(video, rng, annotated_frames=None)` and `predict(...)` with the
  same meaning as on VideoSegmenter.
  """
  segmenter: VideoSegmenter
  params: Any
  lrs: Any

  def segment(self, video: Video, rng: jax.Array,
              annotated_frames: Sequence[int] | None = None):
    return self.segmenter.segment(self.params, self.lrs, video, rng,
                                  annotated_frames)

  def predict(self, video: Video, rng: jax.Array,
              annotated_frames: Sequence[int] | None = None):
    return self.segmenter.predict(self.params, self.lrs, video, rng,
                                  annotated_frames)
