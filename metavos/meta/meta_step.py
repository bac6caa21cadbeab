"""e-OSVOS meta-training as pure functions.

Meta-parameters are the pytree `{"init": params, "lrs": lrs}`. For one task
(a sequence and one of its objects) the inner loop fine-tunes `init` on
augmented copies of the support frame with rates `lrs`; the meta-loss is the
loss of the adapted parameters on the task's query frames. A meta-batch of
tasks is vmapped; under `jax.jit` with the batch sharded over the mesh's
`data` axis and the meta-parameters replicated, XLA splits the tasks across
devices and all-reduces the meta-gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from metavos.finetune import inner_loop, losses, support
from metavos.finetune import lrs as lrs_lib
from metavos.models import interface
from metavos.runtime import chunking, sharding

MetaParams = dict[str, Any]  # {"init": params, "lrs": learning-rate tree}
Batch = dict[str, jax.Array]
PRNGKey = jax.Array
# fold_in data for the query loss's key, apart from the inner steps' keys.
_QUERY_STREAM = 0x7FFF


@dataclasses.dataclass(frozen=True)
class MetaConfig:
  """Static inner-loop settings of meta-training (config.meta)."""
  num_inner_steps: int = 5
  support_copies: int = 3
  augment: tuple[tuple[str, Any], ...] | None = None
  loss: str = "lovasz_hinge"
  first_order: bool = True
  remat: bool = False
  unroll: bool | int = True
  tasks_per_call: int = 0     # 0: vmap all local tasks; N: N at a time.
  # finetune.frozen_stages / finetune.bank: the backbone's first stages stay
  # fixed in the inner loop (and are not meta-learned); each task runs them
  # once on a bank of augmented support copies, as test-time fine-tuning.
  frozen_stages: int = 0
  bank: int = 16
  max_grad_norm: float = 0.0  # finetune.max_grad_norm, as at test time.


def task_loss(meta_params: MetaParams, task: Batch, rng: PRNGKey,
              model: interface.VOSModel, cfg: MetaConfig):
  """Query loss after adapting to one task's support frame.

  Returns:
    (loss, aux) with aux the support loss before the first and after the
    last inner step.
  """
  if cfg.frozen_stages:
    return _task_loss_frozen(meta_params, task, rng, model, cfg)
  model_loss = model.make_loss(losses.get_loss(cfg.loss))
  augment = dict(cfg.augment) if cfg.augment else None
  support_loss = support.make_support_loss(
      model_loss, task["support_image"][None], task["support_mask"][None],
      task["support_valid"][None], copies=cfg.support_copies,
      augment=augment)
  adapted = inner_loop.adapt(
      support_loss, meta_params["init"], meta_params["lrs"], rng,
      cfg.num_inner_steps, first_order=cfg.first_order, remat=cfg.remat,
      unroll=cfg.unroll, max_grad_norm=cfg.max_grad_norm)
  # The inner loop splits `rng` itself; the query draws from a folded key,
  # and is augmented like the support (one copy of each query frame).
  query_rng = jax.random.fold_in(rng, _QUERY_STREAM)
  query = support.augmented_copies(
      jax.random.fold_in(query_rng, 1), task["query_image"],
      task["query_mask"], task["query_valid"], 1, augment)
  q = support.query_loss(model_loss, adapted.params, *query, query_rng)
  return q, _support_aux(adapted)


def _support_aux(adapted: inner_loop.AdaptResult) -> dict[str, jax.Array]:
  return {"support_loss_first": adapted.losses[0],
          "support_loss_last": adapted.losses[-1]}


def _task_loss_frozen(meta_params: MetaParams, task: Batch, rng: PRNGKey,
                      model: interface.VOSModel, cfg: MetaConfig):
  """`task_loss` with the first `cfg.frozen_stages` stages fixed: they run
  once per task, on a bank of `cfg.bank` augmented support copies (every
  inner step draws `support_copies` of them) and on the query frames, under
  stop_gradient (they are not meta-learned), and the inner steps run only
  the layers after them, as test-time fine-tuning does
  (`metavos.finetune.video`)."""
  prefix_fn, suffix_fn = model.split(cfg.frozen_stages)
  pixel_loss = losses.get_loss(cfg.loss)
  augment = dict(cfg.augment) if cfg.augment else None
  init = meta_params["init"]

  def prefix(params, images):
    return jax.lax.stop_gradient(prefix_fn(params, images))

  cache, masks, valid = support.support_bank(
      prefix, init, task["support_image"][None], task["support_mask"][None],
      task["support_valid"][None],
      jax.random.fold_in(rng, support.BANK_STREAM), cfg.bank, augment)
  draw = cfg.support_copies if augment else 1
  adapted = inner_loop.adapt(
      support.make_bank_loss(suffix_fn, pixel_loss, cache, masks, valid,
                             draw),
      init, meta_params["lrs"], rng, cfg.num_inner_steps,
      first_order=cfg.first_order, remat=cfg.remat, unroll=cfg.unroll,
      max_grad_norm=cfg.max_grad_norm)
  query_rng = jax.random.fold_in(rng, _QUERY_STREAM)
  images, masks, valid = support.augmented_copies(
      jax.random.fold_in(query_rng, 1), task["query_image"],
      task["query_mask"], task["query_valid"], 1, augment)
  logits = suffix_fn(adapted.params, prefix(init, images), masks.shape[-2:])
  return pixel_loss(logits[..., 0], masks, valid), _support_aux(adapted)


def batch_loss(meta_params: MetaParams, batch: Batch, keys: PRNGKey,
               model: interface.VOSModel, cfg: MetaConfig):
  """Mean task loss over a meta-batch (vmapped, or `cfg.tasks_per_call`
  tasks at a time).

  Args:
    keys: one PRNG key per task, (B,), so a task's augmentation does not
      depend on how the batch is split over devices.
  """
  one = jax.vmap(lambda t, k: task_loss(meta_params, t, k, model, cfg))
  # Chunks of `tasks_per_call` tasks, one after another in the program (see
  # metavos.runtime.chunking for why not all vmapped, nor lax.map).
  per_task, aux = chunking.chunked_vmap(one, cfg.tasks_per_call, batch, keys)
  return per_task.mean(), jax.tree.map(jnp.mean, aux)


def loss_and_grads(meta_params: MetaParams, batch: Batch, rng: PRNGKey, *,
                   model: interface.VOSModel, cfg: MetaConfig, mesh=None):
  """Meta-loss, aux metrics and meta-gradient, data parallel over `mesh`.

  Args:
    model: the model interface (FCN, OSVOS head or Mask R-CNN alike).
  """
  keys = jax.random.split(rng, batch["support_image"].shape[0])

  def local(mp, batch_and_keys):
    b, k = batch_and_keys
    return jax.value_and_grad(batch_loss, has_aux=True)(mp, b, k, model,
                                                        cfg)

  if mesh is not None:
    local = sharding.batch_mean(local, mesh)
  return local(meta_params, (batch, keys))


def make_optimizer(learning_rate: float, weight_decay: float,
                   train_lrs: bool = True,
                   lrs_learning_rate: float | None = None,
                   frozen=None) -> optax.GradientTransformation:
  """Outer optimiser: RAdam, decoupled weight decay on the init only.

  Args:
    learning_rate: outer rate for the initialisation (paper: 1e-5).
    weight_decay: decoupled (AdamW-style) decay of the initialisation.
    train_lrs: False freezes the learned rates (meta-fine-tuning only the
      initialisation on a second dataset, as in the paper).
    lrs_learning_rate: outer rate for the learning rates (default: same).
    frozen: a tree of bools like the parameters (`VOSModel.frozen_mask`),
      True on frozen stages: their initialisation and rates get no update
      and no weight decay. None: everything is meta-learned.
  """
  init_tx = optax.chain(optax.scale_by_radam(),
                        optax.add_decayed_weights(weight_decay),
                        optax.scale(-learning_rate))
  lrs_tx = (optax.chain(optax.scale_by_radam(),
                        optax.scale(-(lrs_learning_rate or learning_rate)))
            if train_lrs else optax.set_to_zero())
  if frozen is None:
    return optax.multi_transform({"init": init_tx, "lrs": lrs_tx},
                                 {"init": "init", "lrs": "lrs"})

  def labels(meta_params):
    def tree(label):
      return jax.tree.map(lambda f: "fixed" if f else label, frozen)
    # A "global" rate is one scalar, not a tree like the parameters.
    per_leaf = (jax.tree.structure(meta_params["lrs"])
                == jax.tree.structure(meta_params["init"]))
    return {"init": tree("init"), "lrs": tree("lrs") if per_leaf else "lrs"}

  return optax.multi_transform(
      {"init": init_tx, "lrs": lrs_tx, "fixed": optax.set_to_zero()}, labels)


def init_meta_params(params, lr_mode: str, lr_init: float,
                     lr_jitter: float = 0.0, rng: PRNGKey | None = None,
                     frozen=None) -> MetaParams:
  """`{"init": params, "lrs": rates}`; with `frozen` (a tree of bools like
  `params`), the frozen parameters' rates are 0: the rates cover exactly
  the adapted layers (a "global" rate stays one scalar)."""
  lrs = lrs_lib.init_lrs(params, lr_mode, lr_init, lr_jitter, rng)
  if frozen is not None and lr_mode != "global":
    lrs = jax.tree.map(lambda r, f: jnp.zeros_like(r) if f else r, lrs,
                       frozen)
  return {"init": params, "lrs": lrs}


def meta_update(meta_params: MetaParams, opt_state, batch: Batch,
                rng: PRNGKey, *, model: interface.VOSModel, cfg: MetaConfig,
                tx: optax.GradientTransformation, mesh=None):
  """One outer step. Pure; the caller jits it with shardings.

  Returns:
    (meta_params, opt_state, metrics).
  """
  (loss, aux), grads = loss_and_grads(meta_params, batch, rng,
                                      model=model, cfg=cfg, mesh=mesh)
  updates, opt_state = tx.update(grads, opt_state, meta_params)
  meta_params = optax.apply_updates(meta_params, updates)
  meta_params = {"init": meta_params["init"],
                 "lrs": lrs_lib.clamp_lrs(meta_params["lrs"])}
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
  return meta_params, opt_state, metrics
