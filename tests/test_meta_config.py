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
  for arg in ("smoke", "smoke,model=maskrcnn"):
    assert eosvos.meta_config(
        eosvos_config.get_config(arg)).tasks_per_call == 0


def _group_counts(tasks_per_call):
  """feature_group_count of every convolution in the meta-gradient program
  for 2 tasks."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from metavos import models  # pylint: disable=g-import-not-at-top
  from metavos.meta import meta_step  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(name="fcn", backbone="tiny", fpn_dim=8,
                                       norm_groups=4, pretrained=""))
  graphdef, params = nnx.split(models.build_model(cfg, nnx.Rngs(0)),
                               nnx.Param)
  model = models.make_vos_model(cfg, graphdef)
  mc = meta_step.MetaConfig(num_inner_steps=1, support_copies=1,
                            loss="bce", tasks_per_call=tasks_per_call)
  n, h, w = 2, 16, 16
  batch = {"support_image": np.zeros((n, h, w, 3), np.float32),
           "support_mask": np.zeros((n, h, w), np.float32),
           "support_valid": np.ones((n, h, w), bool),
           "query_image": np.zeros((n, 1, h, w, 3), np.float32),
           "query_mask": np.zeros((n, 1, h, w), np.float32),
           "query_valid": np.ones((n, 1, h, w), bool)}
  mp = meta_step.init_meta_params(params, "neuron", 1e-2)
  text = str(jax.make_jaxpr(lambda m: meta_step.loss_and_grads(
      m, batch, jax.random.key(0), model=model, cfg=mc))(mp))
  return {int(t.split("feature_group_count=")[1].split()[0].rstrip(",]"))
          for t in text.split("conv_general_dilated")[1:]}


def test_tasks_one_at_a_time_avoid_grouped_convolutions():
  """Vmapped per-task weights become grouped convolutions; one task per
  chunk keeps every convolution ungrouped (the point of the setting)."""
  assert max(_group_counts(0)) > 1
  assert _group_counts(1) == {1}
