"""Segmentation models: GroupNorm ResNets, a VGG16 trunk, an FPN segmenter,
an OSVOS head, Mask R-CNN.

Typical use:

  model = build_model(config.model, nnx.Rngs(0))
  graphdef, params = split_params(model)
  vos = make_vos_model(config.model, graphdef)   # loss / init_state / predict
  apply_fn = make_apply_fn(graphdef)   # dense models: params, images -> logits
"""

from metavos.models.interface import dense_model
from metavos.models.interface import VOSModel
from metavos.models.osvos_head import OSVOSSegmenter
from metavos.models.pretrained import LoadReport
from metavos.models.pretrained import load_pretrained_backbone
from metavos.models.registry import BACKBONE_NAMES
from metavos.models.registry import build_backbone
from metavos.models.registry import build_model
from metavos.models.registry import default_model_config
from metavos.models.registry import DETECTOR_NAMES
from metavos.models.registry import input_norm
from metavos.models.registry import make_vos_model
from metavos.models.registry import MODEL_NAMES
from metavos.models.resnet import build_resnet
from metavos.models.resnet import group_count
from metavos.models.resnet import ResNet
from metavos.models.resnet import RESNET_SPECS
from metavos.models.segmenter import FCNSegmenter
from metavos.models.segmenter import make_apply_fn
from metavos.models.segmenter import make_apply_with_aux_fn
from metavos.models.segmenter import split_params
from metavos.models.vgg import VGG16
