"""Fine-tuning with the first backbone stages frozen (finetune.frozen_stages):
the split network equals the whole one, the frozen stages stay fixed, and
the adapted layers follow the same steps as fine-tuning the whole network
with zero rates on the frozen stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from metavos import models
from metavos.finetune import lrs as lrs_lib
from metavos.finetune import video as video_lib

pytestmark = pytest.mark.usefixtures("fast_compile")


def _model(backbone, name="osvos"):
  config = models.default_model_config()
  config.name, config.backbone, config.fpn_dim = name, backbone, 4
  config.norm_groups = 4
  model = models.build_model(config, nnx.Rngs(0))
  graphdef, params = models.split_params(model)
  return model, graphdef, params, models.make_vos_model(config, graphdef)


def _images(shape=(2, 20, 28, 3), seed=0):
  return jax.random.uniform(jax.random.key(seed), shape)


@pytest.mark.parametrize("backbone,name,frozen", [
    ("vgg16", "osvos", 0), ("vgg16", "osvos", 3), ("vgg16", "osvos", 5),
    ("tiny", "osvos", 2), ("tiny", "fcn", 4)])
def test_prefix_then_suffix_is_the_whole_network(backbone, name, frozen):
  _, graphdef, params, vos = _model(backbone, name)
  images = _images()
  prefix_fn, suffix_fn = vos.split(frozen)
  cache = prefix_fn(params, images)
  got = suffix_fn(params, cache, images.shape[1:3])
  want = models.make_apply_fn(graphdef)(params, images)
  np.testing.assert_allclose(got, want, rtol=1e-5,
                             atol=1e-5 * float(jnp.abs(want).max()))


def test_the_cache_keeps_only_what_the_rest_reads():
  _, _, params, vos = _model("vgg16")
  cache = vos.split(3)[0](params, _images())
  # conv1_2 (stage 0) is neither a feature nor the last frozen stage.
  assert sorted(cache) == [1, 2]


def _flat(params):
  return {path: np.asarray(v) for path, v in nnx.to_flat_state(params)}


def test_frozen_stages_stay_fixed_and_the_rest_adapts_as_unfrozen():
  model, _, params, vos = _model("tiny")
  frozen = models.segmenter.frozen_params(model.backbone, 2)
  assert frozen == ("conv1", "norm1", "layer1", "layer2")
  rng = np.random.default_rng(0)
  images = rng.random((1, 1, 24, 32, 3), np.float32)  # K=1 object, N=1
  masks = (images[..., 0] > 0.5).astype(np.float32)
  valid = np.ones_like(masks, bool)
  k_params = jax.tree.map(lambda x: x[None], params)
  cfg = dict(num_steps=3, momentum=0.9, loss="bce", copies=1, augment=None,
             unroll=True, steps_per_call=2, frames_per_call=4)
  cached = video_lib.VideoSegmenter(
      vos, video_lib.FinetuneConfig(frozen_stages=2, **cfg))
  whole = video_lib.VideoSegmenter(vos, video_lib.FinetuneConfig(**cfg))
  is_frozen = lambda path: path[0] == "backbone" and path[1] in frozen
  # The reference: the whole network, with zero rates on the frozen stages.
  lrs = jax.tree_util.tree_map_with_path(
      lambda path, _: jnp.asarray(
          0.0 if is_frozen([getattr(e, "key", None) for e in path]) else 0.05),
      lrs_lib.init_lrs(params, "tensor"))
  got, got_losses = cached.adapt(k_params, lrs, images, masks, valid,
                                 jax.random.key(1), 3)
  want, want_losses = whole.adapt(k_params, lrs, images, masks, valid,
                                  jax.random.key(1), 3)
  np.testing.assert_allclose(got_losses, want_losses, rtol=1e-5)
  before, got, want = _flat(k_params), _flat(got), _flat(want)
  moved = 0
  for path in before:
    if is_frozen(path):
      np.testing.assert_array_equal(got[path], before[path])
    else:
      scale = float(np.abs(want[path]).max()) + 1e-6
      np.testing.assert_allclose(got[path], want[path], rtol=1e-4,
                                 atol=1e-5 * scale, err_msg=str(path))
      moved += not np.array_equal(got[path], before[path])
  assert moved > 0


def test_bad_settings_say_what_to_change():
  model, _, _, vos = _model("tiny")
  with pytest.raises(ValueError, match="use 0 .adapt all. to 4"):
    models.segmenter.frozen_params(model.backbone, 5)
  with pytest.raises(ValueError, match="finetune.bank=2 must be at least"):
    video_lib.VideoSegmenter(vos, video_lib.FinetuneConfig(
        frozen_stages=1, bank=2, copies=3, augment=(("flip", True),)))
  detector = vos.__class__(vos.make_loss, vos.init_state, vos.predict, None)
  with pytest.raises(ValueError, match="needs a dense model"):
    video_lib.VideoSegmenter(detector, video_lib.FinetuneConfig(
        frozen_stages=1))
