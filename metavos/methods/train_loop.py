"""The one training loop every method runs.

Sections: resume -> loop (sample, shard, step, log, checkpoint) -> finish.
A method supplies only `init_state`, a jitted `update` and a `sample`
function; checkpoints, logs, the NaN guard (`check_finite`: every
parameter, optimiser statistic and metric, before a step is logged or
checkpointed), sharding and
randomness are the same for all methods.

Resume order (documented in README): (1) the latest checkpoint in
`<workdir>/checkpoints`; (2) `config.restore` (the whole state: a
continuation); (3) fresh initialisation, whose parameters come from
`init_from` when a method passes `config.train.init_from` (parameters only:
fresh optimiser, step 0).
Randomness is derived from `fold_in(seed, step)` and the data position is
the step (the grain stream of metavos.data.pipeline starts at the restored
step), so a resumed run sees exactly the batches and keys of an
uninterrupted one. `data_wait` in the logged metrics is the share of wall
time the loop spent waiting for the loader.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from metavos.data import pipeline
from metavos.runtime import checkpoint, metric_writer, sharding

State = dict[str, Any]  # must hold "step": int32 scalar array


def run(config: ml_collections.ConfigDict, workdir: str, *,
        mesh: jax.sharding.Mesh, init_state: Callable[[], State],
        update: Callable, sample: Callable[[int], dict],
        items_per_step: int = 0, init_from: str = "",
        init_keys: Sequence[str] = ("params",)) -> State:
  """Trains until `config.train.num_steps`; returns the final state.

  Args:
    config: the full config (train.*, seed, restore are read).
    workdir: run directory; checkpoints in `<workdir>/checkpoints`.
    mesh: the data mesh from `metavos.runtime.sharding.make_mesh`.
    init_state: builds a fresh (replicated) state.
    update: jitted `(state, batch, rng) -> (state, metrics)`.
    sample: `step -> this process's numpy batch` (deterministic in step).
    items_per_step: global items per step, for the throughput line.
    init_from: a checkpoint whose "params" replace the fresh state's
      `init_keys` entries; read only when (1) and (2) find nothing.
    init_keys: the state entries `init_from` fills (a two-shot teacher
      starts equal to its student: ("params", "teacher")).
  """
  t = config.train
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 max_to_keep=t.max_checkpoints)
  state, _, source = checkpoint.restore_or_init(
      ckpt, config.restore, init_state)
  if source == "init" and init_from:
    try:
      params = checkpoint.restore_subtree(init_from, "params",
                                          state[init_keys[0]])
    except checkpoint.CheckpointError as e:
      raise checkpoint.CheckpointError(
          e.path, f"config.train.init_from: {e.problem}", e.fix) from e
    for key in init_keys:  # each entry its own copy (the update donates)
      state[key] = jax.tree.map(jnp.copy, params)
    source = f"init, params from {init_from}"
  start = int(jax.device_get(state["step"]))
  logging.info("Training from step %d (%s)", start, source)
  if start < t.num_steps:  # before the first compile
    checkpoint.check_space(os.path.join(workdir, "checkpoints"), state)
  writer = metric_writer.MetricWriter(
      workdir, total_steps=t.num_steps, start_step=start,
      tensorboard=t.tensorboard, items_per_step=items_per_step)
  writer.write_config(config)
  base_rng = jax.random.key(config.seed)
  # What restoring these parameters must agree on (setup.check_input_norm).
  model_norm = (config.model.input_norm if "model" in config else
                config.memory.input_norm if "memory" in config else "")
  stream = pipeline.batches(sample, start, t.num_steps, config.data.loader)
  waited, since = 0.0, time.perf_counter()
  checked = start  # the last step the NaN guard passed (or the start)
  try:
    for step in range(start, t.num_steps):
      ask = time.perf_counter()
      batch = next(stream)
      waited += time.perf_counter() - ask
      batch = sharding.shard_batch(batch, mesh)
      state, metrics = update(state, batch,
                              jax.random.fold_in(base_rng, step))
      done = step + 1
      log = done % t.log_every == 0 or done == t.num_steps
      save = done % t.checkpoint_every == 0 or done == t.num_steps
      if not (log or save):
        continue
      check_finite(state, metrics, done, ckpt.latest_step(),
                   _LR_KEYS.get(config.method, "learning rate"), checked)
      checked = done
      if log:
        # Share of the wall time since the last log spent waiting for data.
        now = time.perf_counter()
        metrics = {**metrics, "data_wait": waited / max(now - since, 1e-9)}
        waited, since = 0.0, now
        writer.write_scalars(done, jax.device_get(metrics))
      if save:
        metadata = {"data_position": done}
        if model_norm:
          metadata["input_norm"] = model_norm
        ckpt.save(done, state, metadata)
  finally:
    # Also on Ctrl-C or an error: let an in-flight save finish, so the next
    # start resumes from it instead of finding a half-written step.
    ckpt.wait_until_finished()
    writer.close()
    ckpt.close()
  return state


# The config key of each method's outer learning rate, for the NaN guard.
_LR_KEYS = {"osvos": "--config.parent.lr", "eosvos": "--config.meta.outer_lr",
            "stcn": "--config.optim.lr", "oneshot": "--config.optim.lr",
            "twoshot": "--config.optim.lr"}


def check_finite(state: State, metrics: dict, step: int,
                 last_checkpoint: int | None, lr_key: str = "learning rate",
                 last_checked: int | None = None) -> None:
  """The NaN/Inf guard every trainer runs before it logs or checkpoints a
  step: the state (parameters, optimiser state) and every metric (the
  gradient norm among them) must be finite, so no metrics line and no
  checkpoint ever holds NaN.

  Checked on the host, one leaf at a time, at the steps the loop logs or
  saves (the steps in between write nothing, and are not waited for): no
  program to compile (a jitted reduction per leaf took 12.9 s to compile
  for a 400-leaf state on XLA:CPU, `benchmarks/bench_nan_guard.py`) and no
  host sync between those steps.

  Args:
    last_checked: the step of the last check that passed, when not
      `step - 1` (named in the error).

  Raises:
    FloatingPointError: naming the step, the first non-finite quantity and
      the fix; nothing of this step has been logged or saved.
  """
  tree = {"state": state, "metrics": metrics}
  first = next((jax.tree_util.keystr(path) for path, x in
                jax.tree_util.tree_flatten_with_path(tree)[0]
                if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
                and not np.isfinite(np.asarray(x)).all()), None)
  if first is None:
    return
  since = ("" if last_checked in (None, step - 1) else
           f" (finite at step {last_checked}, the last step logged or "
           "checkpointed)")
  resume = (f"resume from the last checkpoint (step {last_checkpoint})"
            if last_checkpoint else "restart")
  raise FloatingPointError(
      f"{first} is NaN or Inf after step {step}{since}; nothing of this step "
      f"was logged or checkpointed. Fix: lower {lr_key} or check this "
      f"step's inputs, then {resume}.")


def initial_state(params, tx: optax.GradientTransformation,
                  mesh: jax.sharding.Mesh, key: str = "params",
                  **extra) -> State:
  """A fresh state `{key: params, "opt_state", "step", **extra}`, replicated.

  The jitted update donates its state, so the state owns copies of `params`
  (and of every `extra` tree): the caller's arrays stay valid.
  """
  own = lambda tree: jax.tree.map(jnp.copy, tree)
  state = {key: own(params), "opt_state": tx.init(params),
           "step": jnp.zeros((), jnp.int32),
           **{name: own(tree) for name, tree in extra.items()}}
  return sharding.replicate(state, mesh)


def freeze(tx: optax.GradientTransformation, frozen
           ) -> optax.GradientTransformation:
  """`tx` on the trainable parameters only: those where `frozen` (a tree of
  bools like the parameters, or a function of the parameters returning one)
  is True get no update at all, weight decay included. `frozen` None: `tx`.
  """
  if frozen is None:
    return tx
  labels = lambda mask: jax.tree.map(
      lambda f: "frozen" if f else "train", mask)
  return optax.multi_transform(
      {"train": tx, "frozen": optax.set_to_zero()},
      (lambda params: labels(frozen(params))) if callable(frozen)
      else labels(frozen))


@dataclasses.dataclass(frozen=True)
class _ProcessShare:
  """`step -> this process's share of the global batch` (picklable, for the
  loader's worker processes)."""
  sampler: Any
  batch_size: int
  process_index: int
  process_count: int

  def __call__(self, step: int) -> dict:
    return self.sampler.sample(step, self.batch_size, self.process_index,
                               self.process_count)


def batch_sampler(sampler, batch_size: int) -> Callable[[int], dict]:
  """`step -> this process's share of the global batch` from a sampler with
  `sample(step, batch_size, process_index, process_count)`."""
  return _ProcessShare(sampler, batch_size, jax.process_index(),
                       jax.process_count())


def jit_update(update: Callable, mesh: jax.sharding.Mesh) -> Callable:
  """Jits `update(state, batch, rng)`: state replicated (and donated), the
  batch split over the mesh's data axis."""
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  return jax.jit(update, in_shardings=(repl, data, repl),
                 out_shardings=(repl, repl), donate_argnums=0)
