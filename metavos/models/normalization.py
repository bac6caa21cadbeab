"""Input normalisations: a network's weights were trained with exactly one.

Every metavos model takes RGB images in [0, 1] and normalises them itself,
with the normalisation its weights expect; `config.model.input_norm` records
which, and checkpoints carry it (`metavos.methods.setup.check_input_norm`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# torchvision's ImageNet statistics, for RGB inputs in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# BGR means of Caffe's VGG16 (HED, OSVOS, Keras' VGG16), in 0-255 units.
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)
INPUT_NORMS = ("caffe_bgr", "imagenet_rgb")


def check(input_norm: str) -> str:
  if input_norm not in INPUT_NORMS:
    raise ValueError(f"Unknown model.input_norm {input_norm!r}; options: "
                     f"{INPUT_NORMS}.")
  return input_norm


def normalize(images: jax.Array, input_norm: str) -> jax.Array:
  """Maps RGB images in [0, 1] to what weights trained with `input_norm` saw:
  "caffe_bgr": BGR, 0-255, minus the Caffe mean; "imagenet_rgb": RGB in
  [0, 1], minus the ImageNet mean, over its std."""
  if check(input_norm) == "caffe_bgr":
    mean = jnp.asarray(CAFFE_BGR_MEAN, images.dtype)
    return images[..., ::-1] * 255.0 - mean
  mean = jnp.asarray(IMAGENET_MEAN, images.dtype)
  std = jnp.asarray(IMAGENET_STD, images.dtype)
  return (images - mean) / std
