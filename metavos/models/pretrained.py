"""Loads torchvision ResNet weights from a local file into a `ResNet` backbone.

Accepted files: `.npz` (numpy only) with the state dict's keys, or `.pth`/`.pt`
(needs PyTorch). Nothing is ever downloaded. Conversion:

  conv `*.weight`  (out, in, kh, kw)  ->  `kernel` (kh, kw, in, out)
  BatchNorm `bnK.weight` / `bnK.bias` ->  GroupNorm `normK.scale` / `.bias`
  BatchNorm running statistics, `num_batches_tracked`, `fc.*`  ->  dropped

The BatchNorm affine parameters become GroupNorm's; GroupNorm normalises each
image with its own statistics, so the running mean/variance have no
counterpart. The pretrained features are therefore a (good) initialisation
rather than an exact copy of the ImageNet network.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from metavos.data.errors import DataError
from metavos.models import resnet

PathParts = tuple[Any, ...]

_DROPPED_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
_FIX_ARCH = ("use the checkpoint of the architecture named by "
             "model.backbone (e.g. torchvision resnet18 weights for "
             "backbone='resnet18'), or set model.pretrained='' to train from "
             "scratch")
_CONVERT_CMD = (
    "python -c \"import sys, numpy as np, torch; sd = torch.load(sys.argv[1], "
    "map_location='cpu'); np.savez(sys.argv[2], **{k: v.numpy() for k, v in "
    "sd.items()})\" IN.pth OUT.npz")


@dataclasses.dataclass(frozen=True)
class LoadReport:
  """What a load did.

  Attributes:
    source: the file read.
    loaded: torchvision keys copied into the backbone, in backbone order.
    dropped: keys deliberately ignored (classifier, BatchNorm statistics).
  """
  source: str
  loaded: tuple[str, ...]
  dropped: tuple[str, ...]

  def summary(self) -> str:
    return (f"{self.source}: loaded {len(self.loaded)} tensors, dropped "
            f"{len(self.dropped)} (fc, BatchNorm running statistics and "
            "stages the backbone lacks).")


def torchvision_name(path: PathParts) -> str:
  """Maps a backbone parameter path to its torchvision state-dict key.

  E.g. `('layer1', 0, 'norm2', 'scale')` -> `'layer1.0.bn2.weight'`,
  `('layer2', 0, 'downsample', 0, 'kernel')` ->
  `'layer2.0.downsample.0.weight'`.
  """
  *modules, leaf = path
  names = [f"bn{m[4:]}" if isinstance(m, str) and m.startswith("norm")
           else str(m) for m in modules]
  names.append("bias" if leaf == "bias" else "weight")
  return ".".join(names)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a state dict from `.npz` or `.pth`/`.pt` as numpy arrays.

  Raises:
    DataError: missing file, unknown extension, or `.pth` without PyTorch.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(path, "pretrained weights file not found",
                    "pass an existing local .npz or .pth file (nothing is "
                    "downloaded), or set model.pretrained='' to train from "
                    "scratch")
  if path.suffix == ".npz":
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  if path.suffix in (".pth", ".pt"):
    return _read_torch(path)
  raise DataError(path, f"unsupported weights format {path.suffix!r}",
                  "use a .npz (or a .pth with PyTorch installed)")


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError(path, "reading .pth needs PyTorch, which is not installed",
                    f"convert it once to .npz where torch is available: "
                    f"{_CONVERT_CMD}") from None
  state = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(state, Mapping) and "state_dict" in state:
    state = state["state_dict"]  # training checkpoints wrap the weights
  return {k: v.detach().cpu().numpy() for k, v in state.items()
          if hasattr(v, "detach")}


def _to_torch_layout(shape: tuple[int, ...]) -> tuple[int, ...]:
  """Flax (kh, kw, in, out) -> torch (out, in, kh, kw); 1-D shapes unchanged."""
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return shape


def convert_state_dict(
    expected: Mapping[PathParts, tuple[int, ...]],
    state_dict: Mapping[str, np.ndarray],
    source: str,
    skip_prefixes: tuple[str, ...] = (),
) -> tuple[dict[PathParts, np.ndarray], LoadReport]:
  """Converts a torchvision state dict to backbone parameter arrays.

  Args:
    expected: the backbone's parameter paths and (flax) shapes.
    state_dict: torchvision key -> array.
    source: file name, for error messages.
    skip_prefixes: keys of stages the backbone deliberately lacks (e.g.
      "layer4." for a stride-16 encoder): dropped, like `fc.*`.

  Returns:
    `(arrays, report)`: path -> array in flax layout, and what was loaded.

  Raises:
    DataError: on a missing key, an unexpected key or a shape mismatch; the
      message names the file, the key, both shapes and the fix.
  """
  names = {torchvision_name(p): p for p in expected}
  dropped = tuple(k for k in state_dict
                  if k.startswith(("fc.",) + tuple(skip_prefixes))
                  or k.endswith(_DROPPED_SUFFIXES))
  unexpected = sorted(set(state_dict) - set(names) - set(dropped))
  if unexpected:
    raise DataError(source, f"unexpected keys {_clip(unexpected)} that the "
                    "backbone has no parameter for", _FIX_ARCH)
  missing = [k for k in names if k not in state_dict]
  if missing:
    raise DataError(source, f"missing keys {_clip(missing)}", _FIX_ARCH)
  arrays = {}
  for name, path in names.items():
    value = np.asarray(state_dict[name])
    want = _to_torch_layout(tuple(expected[path]))
    if value.shape != want:
      raise DataError(
          source, f"key {name!r} has shape {value.shape} in the file but the "
          f"backbone expects {want} (torch layout; stored as "
          f"{tuple(expected[path])})", _FIX_ARCH)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    arrays[path] = value.astype(np.float32)
  return arrays, LoadReport(source, tuple(names), dropped)


def load_pretrained_backbone(backbone: resnet.ResNet,
                             path: str | os.PathLike,
                             skip_prefixes: tuple[str, ...] = ()
                             ) -> LoadReport:
  """Overwrites `backbone`'s parameters with the weights stored at `path`.

  Args:
    backbone: the ResNet to fill (modified in place).
    path: local `.npz` or `.pth` torchvision-layout ResNet state dict.
    skip_prefixes: see `convert_state_dict`.

  Returns:
    A `LoadReport` (also logged).

  Raises:
    DataError: see `read_state_dict` and `convert_state_dict`.
  """
  params = nnx.state(backbone, nnx.Param)
  expected = {p: tuple(v.shape) for p, v in nnx.to_flat_state(params)}
  arrays, report = convert_state_dict(expected, read_state_dict(path),
                                      str(path), skip_prefixes)
  nnx.update(backbone, nnx.from_flat_state(
      {p: jnp.asarray(a) for p, a in arrays.items()}))
  logging.info("%s", report.summary())
  n_stats = sum(k.endswith(_DROPPED_SUFFIXES) for k in report.dropped)
  if n_stats:
    logging.info("Dropped %d BatchNorm running statistics: GroupNorm uses "
                 "per-image statistics, so only the affine weight/bias carry "
                 "over.", n_stats)
  return report


def _clip(keys: list[str], limit: int = 8) -> str:
  """Lists up to `limit` keys, then how many more, to keep errors readable."""
  shown = ", ".join(repr(k) for k in keys[:limit])
  more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
  return f"[{shown}]{more}"
