"""configs/eosvos.py -> metavos.meta.meta_step.MetaConfig: how tasks share a
device (`meta.tasks_per_call`)."""

import jax

from configs import eosvos as eosvos_config
from metavos.methods import eosvos


def test_tasks_per_call_auto_is_one_on_cpu_and_smoke_vmaps():
  config = eosvos_config.get_config("davis16_cpu")
  assert config.meta.tasks_per_call == -1
  expected = 1 if jax.default_backend() == "cpu" else 0
  assert eosvos.meta_config(config).tasks_per_call == expected
  config.meta.tasks_per_call = 4
  assert eosvos.meta_config(config).tasks_per_call == 4
  # The smoke presets keep one vmapped program (tiny frames, half the compile).
  for arg in ("smoke", "maskrcnn_smoke"):
    assert eosvos.meta_config(
        eosvos_config.get_config(arg)).tasks_per_call == 0
