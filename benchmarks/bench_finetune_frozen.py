r"""Test-time fine-tuning of OSVOS on VGG16 with the first stages frozen.

Seconds per fine-tuning step (forward + backward + SGD of one object, 2
augmented copies, 240x427) and the one-off cost of the frozen stages' bank,
for `finetune.frozen_stages` = 0 (adapt everything: the baseline) .. 4,
in one process:

  python -m benchmarks.bench_finetune_frozen --frozen=0,2,3,4 --steps=10

Random weights: the cost does not depend on their values.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from benchmarks import common
from metavos import models
from metavos.finetune import video as video_lib

_FROZEN = flags.DEFINE_list("frozen", ["0", "2", "3", "4"],
                            "finetune.frozen_stages values to time.")
_STEPS = flags.DEFINE_integer("steps", 10, "Fine-tuning steps per timing.")
_HEIGHT = flags.DEFINE_integer("height", 240, "Frame height.")
_WIDTH = flags.DEFINE_integer("image_width", 427, "Frame width.")


def main(argv):
  del argv
  config = models.default_model_config()
  config.name, config.backbone, config.fpn_dim = "osvos", "vgg16", 16
  model = models.build_model(config, nnx.Rngs(0))
  graphdef, params = models.split_params(model)
  vos = models.make_vos_model(config, graphdef)
  rng = np.random.default_rng(0)
  h, w = _HEIGHT.value, _WIDTH.value
  images = rng.random((1, 1, h, w, 3), np.float32)
  masks = (images[..., 0] > 0.5).astype(np.float32)
  valid = np.ones_like(masks, bool)
  k_params = jax.tree.map(lambda x: x[None], params)
  augment = tuple(sorted(dict(flip=True, scale_range=(0.9, 1.1),
                              max_rotation_deg=10.0).items()))
  print(f"# {common.machine_line()}")
  print(f"# {_STEPS.value} steps, 2 copies of one {h}x{w} frame, bank 16")
  print("frozen_stages  s/step  first call (compile + bank + steps) s")
  for frozen in (int(f) for f in _FROZEN.value):
    cfg = video_lib.FinetuneConfig(
        num_steps=_STEPS.value, momentum=0.9, loss="balanced_bce_mean",
        copies=2, augment=augment, unroll=True, steps_per_call=_STEPS.value,
        frozen_stages=frozen, bank=16)
    seg = video_lib.VideoSegmenter(vos, cfg)
    run = lambda key: seg.adapt(k_params, np.float32(1e-3), images, masks,
                                valid, jax.random.key(key), _STEPS.value)
    t0 = time.perf_counter()
    jax.block_until_ready(run(0))
    first = time.perf_counter() - t0
    seconds = common.time_fn(run, 1, repeats=2, warmup=0)
    print(f"{frozen:13d}  {seconds / _STEPS.value:6.3f}  {first:8.1f}")


if __name__ == "__main__":
  app.run(main)
