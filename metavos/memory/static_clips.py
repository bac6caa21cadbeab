"""Static-image pre-training clips: fake motion from one labelled frame.

Frame 0 of a clip is the labelled frame itself, untouched; frames 1..L-1 are
independent random affine warps (flip, scale, rotation:
metavos.finetune.augment) with colour jitter of it. One-shot training reads
only frame 0's mask, so no mask of a synthesised frame is made: the
forward-backward loss has to find its way through the warps and back.

Pure JAX with static shapes, so it runs inside the jitted training step,
drawing from the step's key (a resumed run draws the same clips).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metavos.finetune import augment
from metavos.runtime import config_fields


@dataclasses.dataclass(frozen=True)
class StaticClipConfig:
  """Ranges of the random transforms of each synthesised frame.

  Attributes:
    affine: flip, scale and rotation ranges (augment.AugmentConfig).
    brightness: added offset drawn in [-b, b] (images in [0, 1]).
    contrast: factor about the frame mean drawn in [1 - c, 1 + c].
    saturation: factor about the grey image drawn in [1 - s, 1 + s].
  """
  affine: augment.AugmentConfig = augment.AugmentConfig(
      flip=False, scale_range=(0.9, 1.1), max_rotation_deg=15.0)
  brightness: float = 0.1
  contrast: float = 0.2
  saturation: float = 0.2

  @classmethod
  def from_config(cls, s) -> "StaticClipConfig":
    """From the `oneshot.static` config block."""
    return config_fields.from_block(
        cls, s, "config.oneshot.static",
        other_keys=("flip", "scale_range", "max_rotation_deg"),
        affine=augment.AugmentConfig(flip=s.flip,
                                     scale_range=tuple(s.scale_range),
                                     max_rotation_deg=s.max_rotation_deg))


def static_clip(key: jax.Array, frame: jax.Array, num_frames: int,
                cfg: StaticClipConfig = StaticClipConfig()) -> jax.Array:
  """A clip of `num_frames` frames made from one (H, W, 3) frame.

  Returns:
    (num_frames, H, W, 3): frame 0 is `frame` exactly, the others random
    warps with colour jitter of it.
  """
  no_mask = jnp.zeros(frame.shape[:2], jnp.float32)

  def fake(k):
    ka, kc = jax.random.split(k)
    warped, _, _ = augment.warp(frame, no_mask, None,
                                augment.sample_params(ka, cfg.affine))
    return augment.colour_jitter(kc, warped, cfg.brightness, cfg.contrast,
                                 cfg.saturation)

  others = jax.vmap(fake)(jax.random.split(key, num_frames - 1))
  return jnp.concatenate([frame[None], others.astype(frame.dtype)])
