"""DAVIS region (J) and boundary (F) measures, scored as the official toolkit.

Conventions are those of davis2017-evaluation, semi-supervised task:

  * J: Jaccard index of an object's predicted and ground-truth masks, 1 when
    both are empty; pixels of an optional void mask are left out of both.
  * F: boundary F-measure. Boundaries are 1-pixel maps by the seg2bmap rule
    (a pixel differing from its right, bottom or bottom-right neighbour; the
    last row looks only right, the last column only down, the bottom-right
    pixel is never a boundary). A boundary pixel is matched when the other
    map has a boundary pixel in the disk of radius
    `ceil(bound_th * image diagonal)` around it (skimage's `disk`). Empty
    boundary maps: both empty P = R = 1; empty prediction P = 1, R = 0; empty
    ground truth P = 0, R = 1; F = 2PR / (P + R), 0 when P + R = 0.
  * A video is scored per object over frames 1..T-2 (the first frame is the
    given one, the last is left out, as in the official evaluation); the
    objects are those of the first frame.
  * Per object: mean, recall (fraction of frames > 0.5) and decay (mean of the
    first minus mean of the last of four overlapping bins), exactly as the
    official `db_statistics`. Dataset scores average the per-object values
    over every object of every sequence; J&F-Mean = (J-Mean + F-Mean) / 2.

Void in `evaluate_video`: the official semi-supervised evaluation sets void
(255) ground-truth pixels to background and scores them like any background
pixel (its void mask never reaches the metrics). That is the default here, so
numbers match published ones; `exclude_void=True` instead leaves void pixels
out of both masks, the convention of the official unsupervised task.

Speed: masks are bit-packed along rows (64 pixels per uint64 word), so the
boundary maps, the disk dilation (written as an exact union of horizontal
runs, one per disk row) and the pixel counts are a few dozen word-wise numpy
operations on a whole chunk of frames, instead of an OpenCV dilation and a
dozen full-resolution array passes per frame and object.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

PerFrame = dict[str, np.ndarray]  # {"J": (T-2,) float64, "F": (T-2,) float64}
VideoResult = dict[int, PerFrame]  # object id -> per-frame measures

GLOBAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean",
               "F-Recall", "F-Decay")
OBJECT_KEYS = GLOBAL_KEYS[1:]

_WORD = 64  # Pixels per packed word.
_CHUNK = 16  # Frames processed together: packed chunks stay in cache.


# --------------------------------------------------------------------------
# Bit-packed masks. A chunk of N frames becomes an (N, H * words) uint64
# array: each row of W pixels is `words` words, pixel x at bit x % 64 of word
# x // 64, and rows follow each other. Every row keeps at least `radius` spare
# zero bits past the image, so an x-shift of the whole flat array by up to
# `radius` pixels only moves bits between a row and the spare bits of its
# neighbour row, and those bits are never counted. Long contiguous arrays keep
# numpy in its fast inner loops (a (..., words) axis of 14 would not).
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Layout:
  """How frames of one size are packed (see above).

  Attributes:
    height: image height.
    width: image width.
    words: uint64 words per row.
    inside_but_last: (H * words,) bits of columns 0..W-2.
    last_column: (H * words,) bit of column W-1 in every row.
  """

  height: int
  width: int
  words: int
  inside_but_last: np.ndarray
  last_column: np.ndarray


def _row_bits(bits: np.ndarray) -> np.ndarray:
  return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


@functools.lru_cache(maxsize=16)
def _layout(height: int, width: int, radius: int) -> _Layout:
  words = -(-(width + max(radius, 1)) // _WORD)
  inside, last = np.zeros(words * _WORD, bool), np.zeros(words * _WORD, bool)
  inside[:width - 1] = True
  last[width - 1] = True
  inside_but_last = np.tile(_row_bits(inside), height)
  last_column = np.tile(_row_bits(last), height)
  inside_but_last.setflags(write=False)  # Cached and shared.
  last_column.setflags(write=False)
  return _Layout(height, width, words, inside_but_last, last_column)


def _pack(masks: np.ndarray, layout: _Layout) -> np.ndarray:
  """(N, H, W) bool -> (N, H * words) uint64."""
  n = masks.shape[0]
  packed = np.packbits(masks, axis=-1, bitorder="little")
  padded = np.zeros((n, layout.height, layout.words * 8), np.uint8)
  padded[..., :packed.shape[-1]] = packed
  # "<u8": bit order within a word must not depend on the host byte order.
  return padded.view("<u8").astype(np.uint64, copy=False).reshape(n, -1)


def _pack_pair(gt: np.ndarray, pred: np.ndarray, keep: np.ndarray | None,
               layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
  """Packs ground truth and prediction, clearing void bits (keep = ~void)."""
  gt, pred = _pack(gt, layout), _pack(pred, layout)
  if keep is not None:
    gt &= keep
    pred &= keep
  return gt, pred


def _or_shifted(acc: np.ndarray, src: np.ndarray, shift: int,
                tmp: np.ndarray) -> None:
  """acc[x] |= src[x + shift] along flat bit streams (1-D, same length).

  Args:
    acc: accumulator, updated in place.
    src: source bits (not `acc`).
    shift: pixels; > 0 moves bits to lower x.
    tmp: scratch space of the same shape.
  """
  n = src.shape[0]
  q, m = divmod(abs(shift), _WORD)
  if q >= n:
    return
  if shift >= 0:  # Lower x: lower bits of the same word, top bits of the next.
    np.right_shift(src[q:], m, out=tmp[:n - q])
    acc[:n - q] |= tmp[:n - q]
    if m and q + 1 < n:
      np.left_shift(src[q + 1:], _WORD - m, out=tmp[:n - q - 1])
      acc[:n - q - 1] |= tmp[:n - q - 1]
  else:
    np.left_shift(src[:n - q], m, out=tmp[q:])
    acc[q:] |= tmp[q:]
    if m and q + 1 < n:
      np.right_shift(src[:n - q - 1], _WORD - m, out=tmp[q + 1:])
      acc[q + 1:] |= tmp[q + 1:]


def _popcount(words: np.ndarray) -> np.ndarray:
  """Set pixels per map: (N, L) -> (N,) int64."""
  return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def _boundaries(seg: np.ndarray, layout: _Layout) -> np.ndarray:
  """The official seg2bmap boundary map of packed masks."""
  w = layout.words
  east = np.zeros_like(seg)  # The right neighbour of every pixel.
  flat = seg.reshape(-1)
  _or_shifted(east.reshape(-1), flat, 1, np.empty_like(flat))
  below = np.zeros_like(seg)  # Differs from the pixel below; 0 on the last row.
  np.bitwise_xor(seg[:, :-w], seg[:, w:], out=below[:, :-w])
  bmap = seg ^ east  # The last row compares with its right neighbour only.
  bmap[:, :-w] |= below[:, :-w] | (seg[:, :-w] ^ east[:, w:])
  # The last column compares with the pixel below only, so the bottom-right
  # pixel is never a boundary; spare bits are cleared.
  bmap &= layout.inside_but_last
  bmap |= below & layout.last_column
  return bmap


def _disk_half_widths(radius: int) -> list[int]:
  """Row dy of skimage's disk(radius) spans |dx| <= result[|dy|].

  disk(r) holds the integer offsets with dx^2 + dy^2 <= r^2.
  """
  return [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]


def _dilate(bmap: np.ndarray, radius: int, words: int) -> np.ndarray:
  """Binary dilation of packed maps by skimage's disk(radius), zero-padded.

  Equal (inside the image) to cv2.dilate(bmap, disk(radius)) as the official
  code calls it: the disk is the union of its rows, so the dilation is the
  union over dy of the horizontal run dilation of half-width w(dy), moved by
  dy rows. Spare bits may hold garbage afterwards.
  """
  half = _disk_half_widths(radius)
  needed = set(half)
  src = bmap.reshape(-1)
  run, tmp = src.copy(), np.empty_like(src)
  runs = {0: bmap}
  for w in range(1, radius + 1):
    # Each run is built from `bmap` itself, never from a shifted run, so bits
    # in spare positions never travel back into an image row.
    _or_shifted(run, src, w, tmp)
    _or_shifted(run, src, -w, tmp)
    if w in needed:  # The widest run (w = radius) is not modified later.
      runs[w] = run.reshape(bmap.shape)
      if w < radius:
        runs[w] = runs[w].copy()
  out = runs[half[0]]  # Row dy = 0 is the widest.
  if out is bmap:
    out = bmap.copy()
  for dy in range(1, radius + 1):
    row, step = runs[half[dy]], dy * words
    if step >= out.shape[-1]:
      break
    out[:, :-step] |= row[:, step:]
    out[:, step:] |= row[:, :-step]
  return out


def _occupied_rows(maps: np.ndarray, words: int) -> slice:
  """The flat-index slice of the rows where any of `maps` has a set bit."""
  used = np.flatnonzero(np.bitwise_or.reduce(maps, axis=0)) // words
  if used.size == 0:
    return slice(0, 0)
  return slice(int(used[0]) * words, (int(used[-1]) + 1) * words)


def _f_from_counts(n_fg, n_gt, fg_match, gt_match) -> np.ndarray:
  """Boundary F from pixel counts, with the official empty-map conventions."""
  n_fg, n_gt = np.asarray(n_fg), np.asarray(n_gt)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = np.where(n_fg == 0, 1.0,
                         np.where(n_gt == 0, 0.0, fg_match / n_fg))
    recall = np.where(n_gt == 0, 1.0,
                      np.where(n_fg == 0, 0.0, gt_match / n_gt))
    total = precision + recall
    return np.where(total == 0, 0.0, 2 * precision * recall / total)


def _j_packed(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
  """J of packed, already void-masked masks."""
  inter = _popcount(gt & pred)
  union = _popcount(gt | pred)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(union == 0, 1.0, inter / union)


def _f_packed(gt: np.ndarray, pred: np.ndarray, layout: _Layout,
              radius: int) -> np.ndarray:
  """F of packed, already void-masked masks."""
  gt_b, pred_b = _boundaries(gt, layout), _boundaries(pred, layout)
  # Dilate only the rows holding boundary pixels: every pixel that is matched
  # and every pixel it can match lies there.
  rows = _occupied_rows(np.concatenate([gt_b, pred_b]), layout.words)
  gt_r, pred_r = gt_b[:, rows], pred_b[:, rows]
  fg_match = _popcount(pred_r & _dilate(gt_r, radius, layout.words))
  gt_match = _popcount(gt_r & _dilate(pred_r, radius, layout.words))
  return _f_from_counts(_popcount(pred_r), _popcount(gt_r), fg_match, gt_match)


def boundary_radius(height: int, width: int, bound_th: float = 0.008) -> int:
  """The official dilation radius: ceil(bound_th * diagonal), or bound_th >= 1.

  Args:
    height: image height.
    width: image width.
    bound_th: fraction of the image diagonal (< 1), or a radius in pixels.

  Returns:
    The disk radius in pixels (8 at 854x480, 4 at 427x240).

  Raises:
    ValueError: bound_th is negative, or >= 1 and not a whole number (the
      official code would then build a disk on a half-integer grid).
  """
  if bound_th < 0:
    raise ValueError(f"bound_th must be >= 0, got {bound_th}")
  if bound_th >= 1:
    if bound_th != int(bound_th):
      raise ValueError(f"bound_th >= 1 is a radius in pixels and must be a "
                       f"whole number, got {bound_th}")
    return int(bound_th)
  # np.linalg.norm, as the official code, so the rounding is bit-identical.
  return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def _as_frames(name: str, masks, shape=None) -> np.ndarray:
  masks = np.asarray(masks)
  if masks.ndim not in (2, 3):
    raise ValueError(f"{name} must be (H, W) or (T, H, W), got shape "
                     f"{masks.shape}")
  if shape is not None and masks.shape != shape:
    raise ValueError(f"{name} has shape {masks.shape} but gt has {shape}")
  return masks.astype(bool, copy=False)


def _per_frame(gt, pred, void, bound_th: float | None):
  gt = _as_frames("gt", gt)
  pred = _as_frames("pred", pred, gt.shape)
  void = None if void is None else _as_frames("void", void, gt.shape)
  single = gt.ndim == 2
  if single:
    gt, pred = gt[None], pred[None]
    void = None if void is None else void[None]
  height, width = gt.shape[1:]
  radius = 0 if bound_th is None else boundary_radius(height, width, bound_th)
  layout = _layout(height, width, radius)
  out = []
  for start in range(0, gt.shape[0], _CHUNK):
    chunk = slice(start, start + _CHUNK)
    keep = None if void is None else ~_pack(void[chunk], layout)
    g, p = _pack_pair(gt[chunk], pred[chunk], keep, layout)
    out.append(_j_packed(g, p) if bound_th is None
               else _f_packed(g, p, layout, radius))
  values = np.concatenate(out) if out else np.zeros(0)
  return float(values[0]) if single else values


def _unpack(words: np.ndarray, layout: _Layout) -> np.ndarray:
  """(N, H * words) uint64 -> (N, H, W) bool."""
  rows = words.astype("<u8").view(np.uint8).reshape(
      words.shape[0], layout.height, layout.words * 8)
  bits = np.unpackbits(rows, axis=-1, bitorder="little")
  return bits[..., :layout.width].astype(bool)


def seg2bmap(seg) -> np.ndarray:
  """The official 1-pixel boundary map of masks (see the module docstring).

  Args:
    seg: (H, W) or (T, H, W) masks (nonzero = object).

  Returns:
    Boundary maps of the same shape, bool.
  """
  seg = _as_frames("seg", seg)
  frames = seg[None] if seg.ndim == 2 else seg
  layout = _layout(frames.shape[1], frames.shape[2], 0)
  bmap = _unpack(_boundaries(_pack(frames, layout), layout), layout)
  return bmap[0] if seg.ndim == 2 else bmap


def db_eval_iou(gt, pred, void=None):
  """Region similarity J (Jaccard index) per frame.

  Args:
    gt: (H, W) or (T, H, W) ground-truth masks (nonzero = object).
    pred: predicted masks, same shape.
    void: optional masks of the same shape; their pixels are left out of both
      masks.

  Returns:
    (T,) float64 J per frame, or a float for (H, W) input; 1 where both masks
    (outside void) are empty.
  """
  return _per_frame(gt, pred, void, None)


def db_eval_boundary(gt, pred, void=None, bound_th: float = 0.008):
  """Boundary F-measure per frame.

  Args:
    gt: (H, W) or (T, H, W) ground-truth masks (nonzero = object).
    pred: predicted masks, same shape.
    void: optional masks of the same shape; their pixels are cleared from
      both masks before boundaries are taken.
    bound_th: match tolerance, a fraction of the image diagonal (< 1) or a
      whole number of pixels (>= 1).

  Returns:
    (T,) float64 F per frame, or a float for (H, W) input.
  """
  return _per_frame(gt, pred, void, bound_th)


def db_statistics(per_frame) -> tuple[float, float, float]:
  """Mean, recall and decay of one object's per-frame measure.

  Decay splits the frames into four bins with edges
  round(linspace(1, N, 5) + 1e-10) - 1 (consecutive bins share their edge
  frame; 1e-10 makes halves round up, not to even) and returns the mean of
  the first bin minus the mean of the last. NaNs are skipped in the means,
  as in the official code. The official code casts the edges to uint8, which
  wraps for N > 256 frames; here they are plain ints (same result below).

  Args:
    per_frame: (N,) values.

  Returns:
    (mean, recall, decay); NaNs for N = 0.
  """
  values = np.asarray(per_frame, np.float64).reshape(-1)
  if values.size == 0:
    return math.nan, math.nan, math.nan
  mean = _nanmean(values)
  recall = float(np.mean(values > 0.5))
  edges = (np.round(np.linspace(1, values.size, 5) + 1e-10) - 1).astype(int)
  first = values[edges[0]:edges[1] + 1]
  last = values[edges[3]:edges[4] + 1]
  decay = _nanmean(first) - _nanmean(last)
  return mean, recall, decay


def _nanmean(values: np.ndarray) -> float:
  """np.nanmean as the official code, NaN (without a warning) if all NaN."""
  if np.isnan(values).all():
    return math.nan
  return float(np.nanmean(values))


def evaluate_video(gt_masks, pred_masks, object_ids: Iterable[int],
                   void_value: int | None = 255, *, bound_th: float = 0.008,
                   exclude_void: bool = False) -> VideoResult:
  """Per-frame J and F of every object of one video, frames 1..T-2.

  Args:
    gt_masks: (T, H, W) integer ground-truth ids (0 = background).
    pred_masks: (T, H, W) integer predicted ids; frames 0 and T-1 are not
      read (they may hold anything).
    object_ids: the objects to score (DAVIS: the ids of the first frame).
      An id missing from a predicted frame scores as an empty prediction.
    void_value: the ground-truth id of void pixels, never part of an object.
    bound_th: boundary tolerance, see `db_eval_boundary`.
    exclude_void: leave void pixels out of both masks (the official
      unsupervised rule) instead of scoring them as background (what the
      official semi-supervised evaluation does; see the module docstring).

  Returns:
    {object id: {"J": (T-2,) float64, "F": (T-2,) float64}}.

  Raises:
    ValueError: shapes differ, fewer than 3 frames, or a bad object id.
  """
  gt_masks, pred_masks = np.asarray(gt_masks), np.asarray(pred_masks)
  if gt_masks.ndim != 3 or gt_masks.shape != pred_masks.shape:
    raise ValueError(f"gt_masks {gt_masks.shape} and pred_masks "
                     f"{pred_masks.shape} must both be (T, H, W)")
  if gt_masks.shape[0] < 3:
    raise ValueError(f"DAVIS scores frames 1..T-2, so a video needs at least "
                     f"3 frames; got {gt_masks.shape[0]}")
  ids = [int(i) for i in object_ids]
  if not ids or any(i <= 0 or i == void_value for i in ids):
    raise ValueError(f"object_ids must be positive, non-void ids, got {ids}")
  height, width = gt_masks.shape[1:]
  radius = boundary_radius(height, width, bound_th)
  layout = _layout(height, width, radius)
  gt, pred = gt_masks[1:-1], pred_masks[1:-1]
  parts = {i: ([], []) for i in ids}
  for start in range(0, gt.shape[0], _CHUNK):
    g_chunk, p_chunk = gt[start:start + _CHUNK], pred[start:start + _CHUNK]
    keep = None
    if exclude_void and void_value is not None:
      keep = ~_pack(g_chunk == void_value, layout)
    for i in ids:
      g, p = _pack_pair(g_chunk == i, p_chunk == i, keep, layout)
      parts[i][0].append(_j_packed(g, p))
      parts[i][1].append(_f_packed(g, p, layout, radius))
  return {i: {"J": np.concatenate(js), "F": np.concatenate(fs)}
          for i, (js, fs) in parts.items()}


def object_scores(result: PerFrame) -> dict[str, float]:
  """J/F mean, recall and decay of one object's per-frame measures."""
  scores = {}
  for measure in ("J", "F"):
    mean, recall, decay = db_statistics(result[measure])
    scores[f"{measure}-Mean"] = mean
    scores[f"{measure}-Recall"] = recall
    scores[f"{measure}-Decay"] = decay
  return scores


def per_frame_series(result: VideoResult, num_frames: int,
                     measure: str = "J") -> dict[int, np.ndarray]:
  """One measure per frame of the whole video, for plots and reports.

  `evaluate_video` scores frames 1..T-2 only; this places those values at
  their frame indices, with NaN at the unscored first and last frames, so
  index t is frame t. Scores are untouched.

  Args:
    result: an `evaluate_video` (or `DavisEvaluator.add_video`) result.
    num_frames: T, the video's frame count.
    measure: "J" or "F".

  Returns:
    {object id: (T,) float64}, NaN at frames 0 and T-1.

  Raises:
    ValueError: `num_frames` does not fit the result.
  """
  series = {}
  for obj_id, per_frame in result.items():
    values = np.asarray(per_frame[measure], np.float64)
    if values.size != num_frames - 2:
      raise ValueError(f"object {obj_id} has {values.size} scored frames, "
                       f"which does not fit num_frames={num_frames} (frames "
                       "1..T-2 are scored)")
    full = np.full(num_frames, np.nan)
    full[1:-1] = values
    series[obj_id] = full
  return series


def summarize(
    per_sequence_results: Mapping[str, Mapping[int, PerFrame]]) -> dict:
  """Dataset scores, pooling every object of every sequence.

  Args:
    per_sequence_results: sequence name -> `evaluate_video` output, in the
      order rows should appear.

  Returns:
    {"global": {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean",
    "F-Recall", "F-Decay"}, "per_object": {"<sequence>_<id>": {"J-Mean", ...,
    "F-Decay"}}}, all floats.

  Raises:
    ValueError: there is no object to average over.
  """
  per_object = {}
  for sequence, objects in per_sequence_results.items():
    for obj_id in sorted(objects):
      per_object[f"{sequence}_{obj_id}"] = object_scores(objects[obj_id])
  if not per_object:
    raise ValueError("summarize needs at least one scored object")
  global_scores = {key: float(np.mean([s[key] for s in per_object.values()]))
                   for key in OBJECT_KEYS}
  # Averaged as the official script does: (mean J + mean F) / 2.
  global_scores = {
      "J&F-Mean": (global_scores["J-Mean"] + global_scores["F-Mean"]) / 2,
      **global_scores}
  return {"global": global_scores, "per_object": per_object}


class DavisEvaluator:
  """Accumulates per-video results; `result()` gives the dataset scores.

  Usage, after segmenting each video:

    evaluator = DavisEvaluator()
    evaluator.add_video(video.name, video.masks, predicted, video.object_ids)
    scores = evaluator.result()  # `summarize` format.
  """

  def __init__(self, bound_th: float = 0.008, exclude_void: bool = False,
               void_value: int | None = 255):
    """Args: see `evaluate_video`."""
    self._bound_th = bound_th
    self._exclude_void = exclude_void
    self._void_value = void_value
    self._results: dict[str, VideoResult] = {}

  def add_video(self, name: str, gt_masks, pred_masks,
                object_ids: Sequence[int]) -> VideoResult:
    """Scores one video and keeps its per-frame measures.

    Args:
      name: sequence name, unique within this evaluator.
      gt_masks: (T, H, W) ground-truth ids.
      pred_masks: (T, H, W) predicted ids.
      object_ids: the objects to score.

    Returns:
      The video's `evaluate_video` result.

    Raises:
      ValueError: `name` was already added, or see `evaluate_video`.
    """
    self._check_new(name)
    result = evaluate_video(
        gt_masks, pred_masks, object_ids, self._void_value,
        bound_th=self._bound_th, exclude_void=self._exclude_void)
    self.add_result(name, result)
    return result

  def add_result(self, name: str, result: VideoResult) -> None:
    """Keeps a video scored elsewhere (`evaluate_video`'s output, e.g. on
    another process); the same checks as `add_video`."""
    self._check_new(name)
    self._results[name] = result

  def _check_new(self, name: str) -> None:
    if name in self._results:
      raise ValueError(f"sequence {name!r} was already added to this evaluator")

  @property
  def per_sequence(self) -> Mapping[str, VideoResult]:
    """Sequence name -> per-object per-frame measures, in the order added."""
    return dict(self._results)

  def __len__(self) -> int:
    return len(self._results)

  def result(self) -> dict:
    """Dataset scores of every video added so far (see `summarize`)."""
    return summarize(self._results)
