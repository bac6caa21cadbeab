"""FPN segmenter, and the pure apply functions training code uses.

Training code splits a model once and then works on the parameter pytree:

  graphdef, params = split_params(model)
  apply_fn = make_apply_fn(graphdef)
  logits = apply_fn(params, images)            # jit / grad / vmap over params

Every segmenter maps `(B, H, W, 3)` images in [0, 1] to `(B, H, W, 1)` logits
and has `forward_with_aux(images) -> (logits, [side_logits, ...])`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

from metavos.models import fpn
from metavos.models import resnet
from metavos.runtime import platform

Params = Any  # an nnx.State of nnx.Param leaves (a pytree)
ApplyFn = Callable[[Params, jax.Array], jax.Array]
ApplyWithAuxFn = Callable[[Params, jax.Array],
                          tuple[jax.Array, list[jax.Array]]]


class FCNSegmenter(nnx.Module):
  """ResNet + FPN + a merged multi-scale head predicting one logit map.

  As in Panoptic FPN's semantic branch, every pyramid level (already through
  a 3x3 conv + GroupNorm + ReLU at its own scale) is resized to the finest
  (stride 4) level, the levels are summed, and a 1x1 conv gives one logit
  channel, upsampled bilinearly to the input size. Summing rather than
  concatenating, and no extra 3x3 conv at stride 4, keep the decoder cheap:
  the e-OSVOS inner loop differentiates it thousands of times.
  """

  def __init__(self, backbone: resnet.ResNet, fpn_dim: int = 32,
               norm_groups: int = 32, *, rngs: nnx.Rngs):
    """Builds the decoder on top of `backbone`.

    Args:
      backbone: feature extractor returning C2..C5 (owned by this module).
      fpn_dim: channels of the pyramid and of the head.
      norm_groups: requested GroupNorm groups (see `resnet.group_count`).
      rngs: initialisation randomness.
    """
    self.backbone = backbone
    self.fpn = fpn.FPN(backbone.out_channels, fpn_dim, norm_groups, rngs=rngs)
    # A near-zero logit layer starts every pixel near p = 0.5, so the first
    # steps are not spent undoing confident random predictions.
    self.logit = nnx.Conv(fpn_dim, 1, (1, 1), use_bias=True,
                          kernel_init=nnx.initializers.normal(0.01),
                          rngs=rngs,
                          conv_general_dilated=platform.conv_general_dilated())

  def forward_with_aux(
      self, images: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """Returns `(logits, [])`: this model has no side outputs."""
    return self.decode(self.backbone(images), images.shape[-3:-1])

  def decode(self, features: list[jax.Array], size: tuple[int, int]
             ) -> tuple[jax.Array, list[jax.Array]]:
    """The decoder on the backbone's features, with logits of `size`."""
    levels = self.fpn(features)
    height, width = levels[0].shape[-3:-1]
    x = levels[0]
    for level in levels[1:]:
      x = x + fpn.resize_to(level, height, width)
    return fpn.resize_to(self.logit(x), *size), []

  def __call__(self, images: jax.Array) -> jax.Array:
    """Maps `(B, H, W, 3)` images in [0, 1] to `(B, H, W, 1)` logits."""
    return self.forward_with_aux(images)[0]


def split_params(model: nnx.Module) -> tuple[nnx.GraphDef, Params]:
  """`nnx.split(model, nnx.Param)`, checking that nothing else is left.

  Raises:
    ValueError: if the model holds state other than parameters (which
      `make_apply_fn` could not restore).
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leftover = [".".join(map(str, path)) for path, _ in nnx.to_flat_state(rest)]
  if leftover:
    raise ValueError(f"Model holds non-parameter state {leftover}; the pure "
                     "apply functions need parameters only.")
  return graphdef, params


def make_apply_fn(graphdef: nnx.GraphDef) -> ApplyFn:
  """Returns the pure `apply_fn(params, images) -> logits` for `graphdef`.

  Safe under `jax.jit`, `jax.grad`, `jax.vmap` over `params` (e.g. one copy
  per object) and `jax.lax.scan`: the module is rebuilt inside the traced
  function, so no state escapes.
  """
  def apply_fn(params: Params, images: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, params)(images)
  return apply_fn


# Stage outputs of a backbone's frozen stages that the rest of the network
# reads: {stage index: (B, h, w, C)}; -1 holds the images.
Cache = dict[int, jax.Array]


def frozen_params(backbone, num_frozen: int) -> tuple[str, ...]:
  """Names (under `backbone`) of the parameters of its first `num_frozen`
  stages."""
  if not 0 <= num_frozen <= backbone.num_stages:
    raise ValueError(f"frozen_stages={num_frozen}: the backbone has "
                     f"{backbone.num_stages} stages; use 0 (adapt all) to "
                     f"{backbone.num_stages}.")
  return tuple(name for i in range(num_frozen)
               for name in backbone.stage_params(i))


def frozen_mask(graphdef: nnx.GraphDef, params: Params, num_frozen: int):
  """A tree of bools like `params`: True on the parameters of the
  backbone's first `num_frozen` stages (what fine-tuning with
  `frozen_stages=num_frozen` keeps fixed)."""
  names = set(frozen_params(nnx.merge(graphdef, params).backbone,
                            num_frozen))

  def is_frozen(path, _) -> bool:
    keys = [getattr(k, "key", None) for k in path[:2]]
    return keys[0] == "backbone" and keys[1] in names

  return jax.tree_util.tree_map_with_path(is_frozen, params)


def make_split_apply_fns(graphdef: nnx.GraphDef, num_frozen: int):
  """`(prefix_fn, suffix_fn)` that together equal `make_apply_fn(graphdef)`.

  `prefix_fn(params, images) -> cache` runs the backbone's first
  `num_frozen` stages and keeps only what the rest reads (the last frozen
  stage and the frozen feature stages); `suffix_fn(params, cache, size) ->
  logits` runs everything else. Fine-tuning that leaves those stages fixed
  computes the prefix once per support image instead of once per step, and
  `suffix_fn` reads no frozen parameter, so their gradients are zero.
  """
  def prefix_fn(params: Params, images: jax.Array) -> Cache:
    backbone = nnx.merge(graphdef, params).backbone
    frozen_params(backbone, num_frozen)  # validates num_frozen
    outputs = {-1: images,  # "stage -1": what stage 0 reads
               **dict(enumerate(backbone.run_stages(images, 0, num_frozen)))}
    keep = set(backbone.feature_stages) | {num_frozen - 1}
    return {i: x for i, x in outputs.items() if i in keep}

  def suffix_fn(params: Params, cache: Cache, size: tuple[int, int]
                ) -> jax.Array:
    model = nnx.merge(graphdef, params)
    backbone = model.backbone
    outputs = dict(cache)
    if num_frozen < backbone.num_stages:
      rest = backbone.run_stages(cache[num_frozen - 1], num_frozen,
                                 backbone.num_stages)
      outputs.update({num_frozen + i: x for i, x in enumerate(rest)})
    features = [outputs[i] for i in backbone.feature_stages]
    return model.decode(features, size)[0]

  return prefix_fn, suffix_fn


def make_apply_with_aux_fn(graphdef: nnx.GraphDef) -> ApplyWithAuxFn:
  """Like `make_apply_fn`, returning `(logits, side_logits)` for supervision."""
  def apply_with_aux_fn(
      params: Params, images: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    return nnx.merge(graphdef, params).forward_with_aux(images)
  return apply_with_aux_fn
