"""Segmentation models: GroupNorm ResNets, an FPN segmenter, an OSVOS head.

Typical use:

  model = build_model(config.model, nnx.Rngs(0))
  graphdef, params = split_params(model)
  apply_fn = make_apply_fn(graphdef)       # apply_fn(params, images) -> logits
"""

from metavos.models.osvos_head import OSVOSSegmenter
from metavos.models.pretrained import LoadReport
from metavos.models.pretrained import load_pretrained_backbone
from metavos.models.registry import BACKBONE_NAMES
from metavos.models.registry import build_model
from metavos.models.registry import default_model_config
from metavos.models.registry import MODEL_NAMES
from metavos.models.resnet import build_resnet
from metavos.models.resnet import group_count
from metavos.models.resnet import ResNet
from metavos.models.resnet import RESNET_SPECS
from metavos.models.segmenter import FCNSegmenter
from metavos.models.segmenter import make_apply_fn
from metavos.models.segmenter import make_apply_with_aux_fn
from metavos.models.segmenter import split_params
