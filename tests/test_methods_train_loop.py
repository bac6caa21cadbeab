"""metavos.methods.train_loop: starting a fresh run from another run's
parameters (`train.init_from`), without reading it on resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from configs import eosvos as eosvos_config
from metavos.methods import eosvos, train_loop
from metavos.runtime import checkpoint, sharding


def _config(num_steps):
  config = common.base_config("stcn")
  config.train.num_steps = num_steps
  config.train.checkpoint_every = 1
  config.train.log_every = 1
  config.train.tensorboard = False
  return config


def _run(config, workdir, init_from="", init_keys=("params",)):
  """A toy method: SGD with rate 1 on a loss whose gradient is 1, so
  every step subtracts 1 from `w`; a "teacher" copy is never updated."""
  mesh = sharding.make_mesh(1)
  tx = optax.sgd(1.0)

  def update(state, batch, rng):
    del batch, rng
    grads = jax.tree.map(jnp.ones_like, state["params"])
    updates, opt = tx.update(grads, state["opt_state"], state["params"])
    return {**state, "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt, "step": state["step"] + 1}, {"loss": 0.0}

  params = {"w": jnp.zeros((3,))}
  return train_loop.run(
      config, str(workdir), mesh=mesh,
      init_state=lambda: train_loop.initial_state(params, tx, mesh,
                                                  teacher=params),
      update=train_loop.jit_update(update, mesh),
      sample=lambda step: {"x": np.zeros((1, 1), np.float32)},
      init_from=init_from, init_keys=init_keys)


def test_init_from_fills_a_fresh_run_and_is_not_read_on_resume(tmp_path):
  source = _run(_config(3), tmp_path / "source")
  np.testing.assert_array_equal(source["params"]["w"], -3.0)
  ckpt = str(tmp_path / "source" / "checkpoints")

  state = _run(_config(2), tmp_path / "run", ckpt, ("params", "teacher"))
  assert int(state["step"]) == 2  # a fresh run: step 0, not 3
  np.testing.assert_array_equal(state["params"]["w"], -5.0)
  np.testing.assert_array_equal(state["teacher"]["w"], -3.0)

  student_only = _run(_config(1), tmp_path / "student", ckpt)
  np.testing.assert_array_equal(student_only["params"]["w"], -4.0)
  np.testing.assert_array_equal(student_only["teacher"]["w"], 0.0)

  # Resumed from its own checkpoint: init_from is not even opened.
  again = _run(_config(3), tmp_path / "run", str(tmp_path / "missing"))
  assert int(again["step"]) == 3
  np.testing.assert_array_equal(again["params"]["w"], -6.0)


def test_init_from_that_does_not_exist_fails_on_a_fresh_run(tmp_path):
  with pytest.raises(checkpoint.CheckpointError,
                     match="missing: config.train.init_from: does not exist"):
    _run(_config(1), tmp_path / "run", str(tmp_path / "missing"))


def test_eosvos_points_to_meta_init_from(tmp_path):
  config = eosvos_config.get_config("smoke")
  config.train.init_from = "somewhere/checkpoints"
  with pytest.raises(ValueError, match="meta.init_from=somewhere"):
    eosvos.train(config, str(tmp_path))


def _run_into_nan(workdir, config):
  """The e-OSVOS outer_lr=1e30 case: parameters become NaN at step 3 while
  the loss reads 0.0. Returns the FloatingPointError's message."""
  mesh = sharding.make_mesh(1)
  tx = optax.sgd(1.0)

  def update(state, batch, rng):
    del batch, rng
    w = jnp.where(state["step"] >= 2, jnp.nan, state["params"]["w"] - 1.0)
    return {**state, "params": {"w": w}, "step": state["step"] + 1}, {
        "loss": jnp.zeros(())}

  params = {"w": jnp.zeros((3,))}
  config.method = "eosvos"
  with pytest.raises(FloatingPointError) as e:
    train_loop.run(
        config, str(workdir), mesh=mesh,
        init_state=lambda: train_loop.initial_state(params, tx, mesh),
        update=train_loop.jit_update(update, mesh),
        sample=lambda step: {"x": np.zeros((1, 1), np.float32)})
  return str(e.value)


def _written(workdir):
  """(checkpoint steps, metrics-line steps) of a run."""
  with checkpoint.Checkpointer(workdir / "checkpoints",
                               read_only=True) as ckpt:
    saved = ckpt.all_steps()
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return saved, [int(l.split(",")[0].split(":")[1]) for l in lines]


def test_nan_guard_stops_before_logging_or_saving_the_step(tmp_path):
  """Logging and saving every step: the run stops at step 3, names the
  quantity, and neither step 3's checkpoint nor its metrics line exists."""
  msg = _run_into_nan(tmp_path, _config(5))
  assert "['state']['params']['w']" in msg and "after step 3;" in msg
  assert "--config.meta.outer_lr" in msg and "(step 2)" in msg
  assert _written(tmp_path) == ([1, 2], [1, 2])


def test_nan_guard_between_logged_steps(tmp_path):
  """The guard runs at the steps that write something (log every 2, save
  every 4): the state that turned NaN at step 3 is found at step 4, before
  step 4's metrics line or checkpoint; the message names the last step
  found finite."""
  config = _config(8)
  config.train.log_every, config.train.checkpoint_every = 2, 4
  msg = _run_into_nan(tmp_path, config)
  assert "['state']['params']['w']" in msg
  assert "after step 4 (finite at step 2," in msg
  assert "then restart" in msg  # no checkpoint yet
  assert _written(tmp_path) == ([], [2])
