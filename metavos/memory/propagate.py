"""Inference: propagate masks through a video from its annotated frame(s).

One labelled frame: the frame's masks go into the permanent memory slot and
every later frame is predicted from memory, forward or backward in time
(`order`), with a memory frame every `mem_every` frames in a ring buffer of
`max_memory` frames and a top-k read. Objects that first appear later
(`Video.first_frame`) are inserted at their frame, which then also stays in
memory for good.

Several annotated frames: each frame takes the prediction propagated (forward
or backward) from its nearest annotated frame (`merge_nearest`; two-shot
pseudo-labelling uses the same merge).

`MemorySegmenter` has the contract of `metavos.finetune.video.BoundSegmenter`
(`segment` and `predict`), so `metavos.methods.eval_loop.evaluate_split`
runs it unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Iterator, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from metavos.data import sampling
from metavos.data.types import VOID, Video
from metavos.memory import network
from metavos.runtime import config_fields

# frame index -> (masks (K, h, w) float, objects (K,) bool): at that frame the
# flagged objects take the given masks.
Given = Mapping[int, tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class PropagateConfig:
  """Inference settings (the `memory` config block)."""
  mem_every: int = 5
  max_memory: int = 8
  top_k: int | None = 20
  input_size: tuple[int, int] | None = None

  @classmethod
  def from_config(cls, m: ml_collections.ConfigDict,
                  input_size: tuple[int, ...] = ()) -> "PropagateConfig":
    """From `config.memory`; `input_size` is `config.eval.input_size`."""
    return config_fields.from_block(
        cls, m, "config.memory",
        # The network's (metavos.methods.memory_networks.build_network).
        other_keys=("decoder_dim", "frozen_key_stages", "input_norm",
                    "key_backbone", "key_dim",
                    "key_pretrained", "network", "norm_groups", "remat",
                    "value_backbone", "value_dim", "value_pretrained",
                    "xmem"),
        top_k=m.top_k or None,
        input_size=tuple(input_size) if input_size else None)


@functools.partial(jax.jit, static_argnums=0)
def _encode(fns, params, frame):
  return network.frame_features(fns.encode_key(params, frame[None]), 0)


@functools.partial(jax.jit, static_argnums=(0, 5, 6), donate_argnums=2)
def _predict(fns, params, memory, feats, present, top_k, size):
  """Object probabilities (K, H, W) of one frame read from memory, and the
  memory after the read."""
  logits, memory = fns.predict(params, memory, feats, size, present, top_k)
  return jax.nn.softmax(logits, axis=0)[1:], memory


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _new_memory(fns, params, frame, feats, masks, capacity, num_permanent):
  return fns.new_memory(params, frame, feats, masks, capacity, num_permanent)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=2)
def _memorize(fns, params, memory, frame, feats, masks, permanent):
  return fns.memorize(params, memory, frame, feats, masks, permanent)


_resize = jax.jit(jax.image.resize, static_argnames=("shape", "method"))


def propagate(fns: network.MemoryModel, params: network.Params,
              frames: np.ndarray, order: Sequence[int], given: Given,
              cfg: PropagateConfig) -> np.ndarray:
  """Propagates masks along `order` (forward, backward, any sub-range).

  Args:
    fns: the network's pure functions.
    params: its parameters.
    frames: (T, H, W, 3) float32 in [0, 1], at the network's input size.
    order: frame indices to visit, e.g. range(a, T) or range(a, -1, -1);
      `order[0]` must be in `given`.
    given: masks given at some frames (see `Given`); each such frame is
      kept in memory for good.
    cfg: memory schedule and top-k.

  Returns:
    (K, T, H, W) float32 object probabilities; 0 at frames not visited and
    for objects before they are given.
  """
  k = next(iter(given.values()))[0].shape[0] if given else 0
  probs = np.zeros((k, frames.shape[0]) + tuple(frames.shape[1:3]),
                   np.float32)
  for t, p in propagate_steps(fns, params, frames, order, given, cfg):
    probs[:, t] = p
  return probs


def propagate_steps(fns: network.MemoryModel, params: network.Params,
                    frames, order: Sequence[int], given: Given,
                    cfg: PropagateConfig) -> Iterator[tuple[int, np.ndarray]]:
  """`propagate` one frame at a time: yields (t, (K, H, W) probabilities)
  along `order`, keeping nothing but the memory. `frames` is anything with
  `frames[t]` -> (H, W, 3) and `frames.shape` (T, H, W, 3), e.g. frames
  decoded on demand."""
  order = list(order)
  if not order or order[0] not in given:
    raise ValueError("propagate: order[0] must be a frame with given masks.")
  k = next(iter(given.values()))[0].shape[0]
  num_permanent = sum(t in given for t in order)
  # max_memory counts every memory frame; it grows only if the given frames
  # alone would fill it (leaving no slot for recent frames).
  capacity = max(cfg.max_memory, num_permanent + 1)
  size = tuple(frames.shape[1:3])
  present = np.zeros((k,), bool)
  memory = None
  for i, t in enumerate(order):
    frame = frames[t]
    feats = _encode(fns, params, frame)
    if i == 0:
      p = np.zeros((k,) + size, np.float32)
    else:
      p, memory = _predict(fns, params, memory, feats, present, cfg.top_k,
                           size)
      p = np.asarray(p)
    if t in given:
      masks, objs = given[t]
      objs = np.asarray(objs, bool)[:, None, None]
      taken = np.clip(np.sum(masks * objs, axis=0), 0.0, 1.0)
      # New objects take their given masks; the others give way there.
      p = np.where(objs, masks, p * (1.0 - taken)).astype(np.float32)
      present |= objs[:, 0, 0]
    if memory is None:
      memory = _new_memory(fns, params, frame, feats, p, capacity,
                           num_permanent)
    elif t in given or i % cfg.mem_every == 0:
      memory = _memorize(fns, params, memory, frame, feats, p, t in given)
    yield t, p


def nearest_annotated(num_frames: int,
                      annotated_frames: Sequence[int]) -> np.ndarray:
  """For each frame, the index into `annotated_frames` of the nearest one.

  Ties go to the earlier annotated frame (forward propagation).

  Returns:
    (T,) int index into `annotated_frames` (as given, not sorted).
  """
  ann = np.asarray(annotated_frames)
  dist = np.abs(np.arange(num_frames)[:, None] - ann[None, :])
  # Lexicographic: smallest distance, then smallest frame index.
  rank = dist * (num_frames + 1) + ann[None, :]
  return np.argmin(rank, axis=1)


def merge_nearest(propagated: Sequence[np.ndarray],
                  annotated_frames: Sequence[int],
                  time_axis: int = 1) -> np.ndarray:
  """Each frame from the propagation of its nearest annotated frame.

  Args:
    propagated: propagated[j] is the prediction propagated from
      `annotated_frames[j]`, full length along `time_axis` (frames it did
      not reach may hold anything).
    annotated_frames: the annotated frame of each propagation.
    time_axis: the frame axis of the arrays (1 for (K, T, H, W)).

  Returns:
    An array of the same shape, frame t taken from
    propagated[nearest_annotated(T, annotated_frames)[t]].
  """
  if len(propagated) != len(annotated_frames):
    raise ValueError(f"merge_nearest: {len(propagated)} propagations for "
                     f"{len(annotated_frames)} annotated frames.")
  arrays = [np.moveaxis(np.asarray(p), time_axis, 0) for p in propagated]
  near = nearest_annotated(arrays[0].shape[0], annotated_frames)
  merged = np.stack([arrays[j][t] for t, j in enumerate(near)])
  return np.moveaxis(merged, 0, time_axis)


def to_ids(probs: np.ndarray, object_ids: Sequence[int]) -> np.ndarray:
  """(K, ..., H, W) object probabilities -> uint8 ids, argmax over K+1
  classes with background = 1 - sum of the objects."""
  bg = np.clip(1.0 - probs.sum(axis=0, keepdims=True), 0.0, 1.0)
  ids = np.asarray((0,) + tuple(object_ids), np.uint8)
  return ids[np.argmax(np.concatenate([bg, probs]), axis=0)]


def _one_hot(mask: np.ndarray, object_ids: Sequence[int]) -> np.ndarray:
  ids = np.asarray(object_ids)[:, None, None]
  return (mask[None] == ids).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class MemorySegmenter:
  """A memory network with fixed parameters, segmenting whole videos.

  Same contract as `metavos.finetune.video.BoundSegmenter`. `rng` is
  accepted for that contract and unused: propagation is deterministic.
  """
  fns: network.MemoryModel
  params: Any
  cfg: PropagateConfig = PropagateConfig()

  def predict(self, video: Video, rng: jax.Array | None = None,
              annotated_frames: Sequence[int] | None = None):
    """Per-object probabilities propagated from the annotated frame(s).

    Args:
      video: the video; masks are read only at the annotated frames.
      rng: unused.
      annotated_frames: frames whose ground truth is given (all objects);
        None = each object's first annotated frame (one-shot protocol).

    Returns:
      (probs, support_frames, stats): probs (K, T, H, W) float32 at the
      video's size (0 before an object's first frame), the sorted given
      frames, and a dict of timings.
    """
    del rng
    t0 = time.perf_counter()
    size = self.cfg.input_size or video.size
    frames = sampling.resize_frames(video.frames, size).astype(
        np.float32) / 255.0
    masks = sampling.resize_masks(video.masks, size)
    objs = list(video.object_ids)
    run = functools.partial(propagate, self.fns, self.params, frames,
                            cfg=self.cfg)
    if annotated_frames is None:
      support = sorted({video.first_frame[o] for o in objs})
      given = {t: (_one_hot(masks[t], objs),
                   np.array([video.first_frame[o] == t for o in objs]))
               for t in support}
      small = run(range(support[0], video.num_frames), given=given)
    else:
      support = sorted(set(annotated_frames))
      _check_annotated(video, support)
      near = nearest_annotated(video.num_frames, support)
      runs = []
      for j, a in enumerate(support):
        given = {a: (_one_hot(masks[a], objs), np.ones(len(objs), bool))}
        mine = np.flatnonzero(near == j)
        fwd = run(range(a, mine.max() + 1), given=given)
        bwd = run(range(a, mine.min() - 1, -1), given=given)
        fwd[:, :a] = bwd[:, :a]
        runs.append(fwd)
      small = merge_nearest(runs, support)
    probs = np.asarray(_resize(small, small.shape[:2] + video.size,
                               method="bilinear"))
    return probs, support, {"propagate_seconds": time.perf_counter() - t0}

  def segment(self, video: Video, rng: jax.Array | None = None,
              annotated_frames: Sequence[int] | None = None):
    """(pred (T, H, W) uint8 ids, stats with "seconds" and "fps")."""
    t0 = time.perf_counter()
    probs, support, stats = self.predict(video, rng, annotated_frames)
    pred = to_ids(probs, video.object_ids)
    for t in support:  # Given frames keep their given masks.
      pred[t] = np.where(video.masks[t] == VOID, 0, video.masks[t])
    seconds = time.perf_counter() - t0
    stats.update(seconds=seconds, fps=video.num_frames / seconds)
    return pred, stats


def _check_annotated(video: Video, frames: Sequence[int]) -> None:
  bad = [t for t in frames
         if not 0 <= t < video.num_frames or not video.annotated[t]]
  if bad:
    raise ValueError(f"{video.name}: annotated frames {bad} are not "
                     "annotated frames of this video; pick frames with a "
                     "ground-truth mask.")
