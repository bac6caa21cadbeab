"""Random geometric and colour augmentation of training clips, in pure JAX.

Memory networks are trained on clips of a few frames (STCN, one-shot,
two-shot). With few training videos the network sees the same few views
again and again; as STCN does, every clip is therefore re-drawn:

  - one clip-level warp shared by all its frames (zoom, rotation,
    translation: metavos.finetune.augment), so the object's motion inside
    the clip is kept while its framing changes from draw to draw;
  - a small extra warp and a colour jitter per frame, which adds motion and
    appearance change between frames.

Frames, their one-hot masks and their valid maps get the same warp (bilinear
for frames, nearest neighbour for masks); pixels whose source lies outside
the frame become black and invalid, so the losses skip them. Shapes stay
static, so it runs inside the jitted training step on the step's key (a
resumed run draws the same clips) and shards with the batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metavos.finetune import augment
from metavos.runtime import config_fields


@dataclasses.dataclass(frozen=True)
class ClipAugmentConfig:
  """Ranges of the random transforms (all zero / (1, 1) = identity).

  Attributes:
    scale_range: clip-level zoom drawn uniformly in (low, high).
    max_rotation_deg: clip-level rotation in [-x, x] degrees.
    max_shift: clip-level translation in [-x, x] of the frame height/width.
    frame_scale: per-frame extra zoom in [1 - x, 1 + x].
    frame_rotation_deg: per-frame extra rotation in [-x, x] degrees.
    frame_shift: per-frame extra translation in [-x, x] of height/width.
    brightness, contrast, saturation: per-frame colour jitter
      (finetune.augment.colour_jitter).
  """
  scale_range: tuple[float, float] = (0.9, 1.3)
  max_rotation_deg: float = 15.0
  max_shift: float = 0.1
  frame_scale: float = 0.05
  frame_rotation_deg: float = 5.0
  frame_shift: float = 0.03
  brightness: float = 0.05
  contrast: float = 0.1
  saturation: float = 0.1

  def __post_init__(self):
    low, high = self.scale_range
    if not 0.0 < low <= high:
      raise ValueError(f"clip.augment.scale_range must satisfy 0 < low <= "
                       f"high, got {self.scale_range}; (1.0, 1.0) is off.")
    if not 0.0 <= self.frame_scale < 1.0:
      raise ValueError(f"clip.augment.frame_scale must be in [0, 1), got "
                       f"{self.frame_scale}.")
    for name in ("max_rotation_deg", "max_shift", "frame_rotation_deg",
                 "frame_shift", "brightness", "contrast", "saturation"):
      if getattr(self, name) < 0:
        raise ValueError(f"clip.augment.{name} must be >= 0, got "
                         f"{getattr(self, name)}; 0 turns it off.")

  @classmethod
  def from_config(cls, a) -> "ClipAugmentConfig":
    """From the `clip.augment` config block (its fields by name)."""
    return config_fields.from_block(cls, a, "config.clip.augment",
                                    other_keys=("enabled",))


def _sym(key: jax.Array, limit: float, shape=()) -> jax.Array:
  """Uniform in [-limit, limit]; exactly 0 when limit is 0."""
  if limit == 0:
    return jnp.zeros(shape, jnp.float32)
  return jax.random.uniform(key, shape, minval=-limit, maxval=limit)


def clip_warps(key: jax.Array, num_frames: int, height: int, width: int,
               cfg: ClipAugmentConfig
               ) -> tuple[augment.AffineParams, jax.Array]:
  """Each frame's warp: the clip's warp composed with the frame's own.

  Both are a zoom and rotation about the centre followed by a translation,
  so they compose into one: scales multiply, angles and shifts add.

  Returns:
    (AffineParams with (L,) leaves, shifts (L, 2) in pixels).
  """
  ks, ka, kt, kfs, kfa, kft = jax.random.split(key, 6)
  low, high = cfg.scale_range
  scale = (jax.random.uniform(ks, minval=low, maxval=high) if high > low
           else jnp.float32(low))
  size = jnp.array([height, width], jnp.float32)
  angle = _sym(ka, cfg.max_rotation_deg)
  shift = _sym(kt, cfg.max_shift, (2,)) * size
  frame_scale = 1.0 + _sym(kfs, cfg.frame_scale, (num_frames,))
  frame_angle = _sym(kfa, cfg.frame_rotation_deg, (num_frames,))
  frame_shift = _sym(kft, cfg.frame_shift, (num_frames, 2)) * size
  params = augment.AffineParams(flip=jnp.zeros(num_frames, bool),
                                scale=scale * frame_scale,
                                angle_deg=angle + frame_angle)
  return params, shift + frame_shift


def augment_clip(key: jax.Array, frames: jax.Array, masks: jax.Array,
                 valid: jax.Array, cfg: ClipAugmentConfig
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One randomly re-drawn clip.

  Args:
    key: PRNG key.
    frames: (L, H, W, 3) in [0, 1].
    masks: (L, K, H, W) one-hot masks (any values are carried along).
    valid: (L, H, W) bool.
    cfg: the ranges.

  Returns:
    (frames, masks, valid) of the same shapes and dtypes.
  """
  num_frames, height, width = frames.shape[:3]
  warp_key, colour_key = jax.random.split(key)
  params, shifts = clip_warps(warp_key, num_frames, height, width, cfg)

  def one(frame, mask, ok, p, t, k):
    frame, mask, ok = augment.warp(frame, jnp.moveaxis(mask, 0, -1), ok, p,
                                   (t[0], t[1]))
    frame = augment.colour_jitter(k, frame, cfg.brightness, cfg.contrast,
                                  cfg.saturation)
    return frame, jnp.moveaxis(mask, -1, 0), ok

  return jax.vmap(one)(frames, masks, valid, params, shifts,
                       jax.random.split(colour_key, num_frames))


def augment_batch(key: jax.Array, batch: dict, cfg: ClipAugmentConfig
                  ) -> dict:
  """`augment_clip` on every clip of a batch (independent draws); other
  entries of the batch are returned unchanged."""
  keys = jax.random.split(key, batch["frames"].shape[0])
  frames, masks, valid = jax.vmap(augment_clip, in_axes=(0, 0, 0, 0, None))(
      keys, batch["frames"], batch["masks"], batch["valid"], cfg)
  return {**batch, "frames": frames.astype(batch["frames"].dtype),
          "masks": masks, "valid": valid}


def static_batch(batch: dict) -> dict:
  """Every clip of a batch becomes its first frame repeated: frames, masks,
  void maps and label flags (static-image pre-training; `augment_batch`
  afterwards makes the motion)."""
  repeat = lambda x: jnp.broadcast_to(x[:, :1], x.shape)
  return {**batch, **{k: repeat(batch[k]) for k in
                      ("frames", "masks", "valid", "labelled") if k in batch}}


def from_clip_config(clip) -> ClipAugmentConfig | None:
  """The `clip.augment` block as a config, or None when it is off (then no
  augmentation is compiled into the training step)."""
  a = clip.get("augment")
  if a is None or not a.enabled:
    return None
  return ClipAugmentConfig.from_config(a)
