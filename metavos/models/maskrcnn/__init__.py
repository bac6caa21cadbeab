"""Mask R-CNN (He et al., 2017) with static shapes, for e-OSVOS.

  anchors.py    anchor boxes per pyramid level
  boxes.py      IoU, box regression code, mask -> box, jitter
  nms.py        greedy NMS with a fixed number of outputs
  roi_align.py  RoIAlign as separable bilinear weights, FPN level rule
  rpn.py        RPN head and fixed-size proposals
  heads.py      box head and 28x28 mask head
  model.py      the nnx module and its static spec
  losses.py     RPN + box + mask loss for one object
  paste.py      a box's mask pasted into the frame
  tracking.py   per-frame detection with bounding-box propagation
  vos.py        the model behind `metavos.models.interface.VOSModel`
"""

from metavos.models.maskrcnn.model import MaskRCNN
from metavos.models.maskrcnn.model import MaskRCNNSpec
from metavos.models.maskrcnn.vos import make_vos_model
