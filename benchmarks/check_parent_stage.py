"""The e-OSVOS parent stage trains the same network as the OSVOS parent.

  python -m benchmarks.check_parent_stage [--steps 50]

Runs `configs/eosvos.py:davis16_cpu`'s parent stage and
`configs/osvos.py:davis16_cpu --config.model.name=fcn` for the same number of
steps (real DAVIS 2016 240p data from ../shared) in temporary folders and
prints the largest parameter difference (0.0: the stage reproduces the parent
of BENCHMARKS.md's ablation) and how far training moved the parameters.
"""

import argparse
import tempfile

import jax
import numpy as np

from configs import eosvos as eosvos_config
from configs import osvos as osvos_config
from metavos.methods import eosvos, osvos, setup


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=50)
  steps = ap.parse_args().steps
  e = eosvos_config.get_config("davis16_cpu")
  e.parent.num_steps = steps
  o = osvos_config.get_config("davis16_cpu")
  o.model.name, o.train.num_steps = "fcn", steps
  model = setup.build_model(e, e.seed)
  with tempfile.TemporaryDirectory() as d:
    a = eosvos.starting_params(e, f"{d}/eosvos", model.params)
    b = jax.device_get(osvos.train(o, f"{d}/osvos")[0])
  gap = lambda x, y: max(float(np.abs(p - q).max()) for p, q in zip(
      jax.tree.leaves(x), jax.tree.leaves(y)))
  print(f"{steps} steps: max |parent stage - OSVOS parent| = {gap(a, b)}, "
        f"moved from init by up to {gap(a, model.params):.4f}")


if __name__ == "__main__":
  main()
