"""Checkpoints: round trips, the resume order, and loud failures."""

import errno
import pathlib
import shutil
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from metavos.runtime import checkpoint

from _fake_devices import run_on_fake_devices

# Orbax reads arrays concurrently; after the first failed read it leaves the
# others unretrieved, and pytest reports them (at garbage collection, so in
# whichever test runs next) as unraisable exceptions.
pytestmark = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning")


def _init(hidden: int = 3) -> dict:
  """A small train state: params, Adam state, a step and a typed PRNG key."""
  params = {"dense": {"kernel": jnp.arange(2.0 * hidden).reshape(2, hidden),
                      "bias": jnp.ones(hidden)}}
  return {"params": params, "opt_state": optax.adam(1e-3).init(params),
          "step": 0, "rng": jax.random.key(0)}


def _trained(step: int) -> dict:
  state = _init()
  state["params"] = jax.tree.map(lambda x: x + step, state["params"])
  state["step"] = step
  state["rng"] = jax.random.fold_in(state["rng"], step)
  return state


def _assert_same(a, b):
  def leaf_equal(x, y):
    if jax.dtypes.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  jax.tree.map(leaf_equal, a, b)


def _save(workdir, *steps, **kwargs) -> pathlib.Path:
  root = checkpoint.checkpoint_dir(workdir)
  with checkpoint.Checkpointer(root, **kwargs) as ckpt:
    for step in steps:
      ckpt.save(step, _trained(step), {"data_position": step * 10})
    ckpt.wait_until_finished()
  return pathlib.Path(root)


def test_round_trip_keeps_values_metadata_and_dtypes(tmp_path):
  config = ml_collections.ConfigDict({"lr": 0.1, "sizes": (1, 2)})
  root = checkpoint.checkpoint_dir(tmp_path)
  with checkpoint.Checkpointer(root) as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.save(7, _trained(7), {"position": np.int64(70),
                                      "config": config})
    ckpt.wait_until_finished()
    state, metadata = ckpt.restore(7, _init())
  _assert_same(state, _trained(7))
  assert state["params"]["dense"]["kernel"].dtype == jnp.float32
  assert metadata == {"position": 70, "config": {"lr": 0.1, "sizes": [1, 2]}}


def test_keeps_max_to_keep_and_honours_interval(tmp_path):
  root = _save(tmp_path, 1, 2, 3, 4, 5, 6, max_to_keep=2, save_interval_steps=2)
  assert sorted(int(p.name) for p in root.iterdir()) == [4, 6]
  with checkpoint.Checkpointer(root, save_interval_steps=100) as ckpt:
    assert not ckpt.save(7, _trained(7))
    assert ckpt.save(7, _trained(7), force=True)
    ckpt.wait_until_finished()
    assert not ckpt.save(7, _trained(7), force=True)  # Already saved.
    assert ckpt.latest_step() == 7


def test_resume_order_workdir_then_restore_path_then_init(tmp_path):
  other = tmp_path / "other"
  _save(other, 3, 5)
  run = tmp_path / "run"

  state, metadata, source = checkpoint.restore_or_init(run, None, _init)
  assert source == "init" and metadata == {}
  _assert_same(state, _init())

  # Any spelling of the other run's checkpoint: workdir, root, step dir.
  for path, step in [(other, 5), (other / "checkpoints", 5),
                     (other / "checkpoints" / "3", 3)]:
    state, metadata, source = checkpoint.restore_or_init(run, path, _init)
    assert source == "restore_path", path
    assert metadata == {"data_position": step * 10}
    _assert_same(state, _trained(step))

  assert not checkpoint.has_checkpoint(run / "checkpoints")
  _save(run, 8)
  assert checkpoint.has_checkpoint(run / "checkpoints")
  state, metadata, source = checkpoint.restore_or_init(run, other, _init)
  assert source == "workdir" and state["step"] == 8
  # The run's own Checkpointer may stand in for its workdir.
  with checkpoint.Checkpointer(checkpoint.checkpoint_dir(run)) as own:
    state, _, source = checkpoint.restore_or_init(own, other, _init)
  assert source == "workdir" and state["step"] == 8


def test_relative_paths_work(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  _save("run", 2)
  state, _, source = checkpoint.restore_or_init("new", "run", _init)
  assert source == "restore_path" and state["step"] == 2
  params = checkpoint.restore_subtree("run/checkpoints/2", "params",
                                      _init()["params"])
  _assert_same(params, _trained(2)["params"])


def test_restore_uses_target_shardings(tmp_path):
  _save(tmp_path, 2)
  mesh = jax.make_mesh((1,), ("data",))
  target = checkpoint.abstract_like(
      _init(), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  state, _, _ = checkpoint.restore_or_init(tmp_path, None, _init,
                                           abstract_state=target)
  for leaf, want in zip(jax.tree.leaves(state), jax.tree.leaves(target)):
    assert leaf.sharding == want.sharding


@pytest.mark.parametrize("change, expected", [
    (lambda s: s["params"]["dense"].update(extra=jnp.zeros(2)),
     "params/dense/extra: missing from the checkpoint"),
    (lambda s: s["params"]["dense"].pop("bias"),
     "params/dense/bias: in the checkpoint but not in the target"),
    (lambda s: s["params"]["dense"].update(kernel=jnp.zeros((2, 4))),
     "params/dense/kernel: shape (2, 3) saved, (2, 4) expected"),
    (lambda s: s["params"]["dense"].update(bias=jnp.zeros(3, jnp.bfloat16)),
     "params/dense/bias: dtype float32 saved, bfloat16 expected"),
])
def test_mismatch_raises_naming_path_and_difference(tmp_path, change, expected):
  _save(tmp_path, 4)

  def init():
    state = _init()
    change(state)
    return state

  with pytest.raises(checkpoint.CheckpointError) as error:
    checkpoint.restore_or_init(tmp_path, None, init)
  message = str(error.value)
  assert str(tmp_path / "checkpoints" / "4") in message
  assert expected in message and "Fix:" in message


def test_half_written_latest_step_raises_instead_of_starting_fresh(tmp_path):
  root = _save(tmp_path, 4)
  (root / "9").mkdir()  # E.g. an interrupted copy of a checkpoint.
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"9: is incomplete .*delete it to resume from "
                     r"step 4"):
    checkpoint.restore_or_init(tmp_path, None, _init)


def test_unfinished_orbax_save_is_skipped_or_named(tmp_path):
  root = _save(tmp_path, 4)
  unfinished = root / "9.orbax-checkpoint-tmp-1700000000"
  unfinished.mkdir()
  state, _, source = checkpoint.restore_or_init(tmp_path, None, _init)
  assert source == "workdir" and state["step"] == 4
  with pytest.raises(checkpoint.CheckpointError, match="never finished"):
    checkpoint.restore_or_init(tmp_path / "new", unfinished, _init)


def test_damaged_array_files_raise(tmp_path):
  root = _save(tmp_path, 4)
  data_files = [p for p in (root / "4" / "state").rglob("*")
                if p.is_file() and p.parent.name == "d"]
  assert data_files
  for path in data_files:
    path.write_bytes(path.read_bytes()[:10])
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"4: could not be read \(ValueError: .*size 10\)"
                     r"\. Fix: copy"):
    checkpoint.restore_or_init(tmp_path, None, _init)


def test_restore_path_errors_name_the_path(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
    checkpoint.restore_or_init(tmp_path / "run", tmp_path / "typo", _init)
  (tmp_path / "empty").mkdir()
  with pytest.raises(checkpoint.CheckpointError,
                     match="empty: holds no finished checkpoint"):
    checkpoint.restore_or_init(tmp_path / "run", tmp_path / "empty", _init)


def test_restore_subtree_reads_only_params(tmp_path):
  _save(tmp_path, 6)
  abstract = jax.eval_shape(lambda: _init()["params"])
  params = checkpoint.restore_subtree(tmp_path, "params", abstract)
  _assert_same(params, _trained(6)["params"])
  assert isinstance(params["dense"]["bias"], jax.Array)
  kernel = checkpoint.restore_subtree(tmp_path / "checkpoints" / "6",
                                      ("params", "dense", "kernel"),
                                      abstract["dense"]["kernel"])
  _assert_same(kernel, _trained(6)["params"]["dense"]["kernel"])
  with pytest.raises(checkpoint.CheckpointError,
                     match="params/dense/extra: missing from the checkpoint"):
    checkpoint.restore_subtree(tmp_path, "params",
                               {"dense": {**abstract["dense"],
                                          "extra": abstract["dense"]["bias"]}})


_MULTI_DEVICE_SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from metavos.runtime import checkpoint, sharding
    assert jax.device_count() == 8
    mesh = sharding.make_mesh()
    workdir = sys.argv[1]

    # Saved from one layout: a data-sharded table and replicated params.
    table = jax.device_put(jnp.arange(32.0).reshape(8, 4),
                           sharding.data_sharded(mesh))
    state = {"table": table,
             "params": sharding.replicate({"w": jnp.ones((3, 2))}, mesh)}
    with checkpoint.Checkpointer(checkpoint.checkpoint_dir(workdir)) as c:
      c.save(1, state)
      c.wait_until_finished()

    # Restored into another: the target's shardings win.
    target = {"table": jax.ShapeDtypeStruct((8, 4), jnp.float32,
                                            sharding=sharding.replicated(mesh)),
              "params": {"w": jax.ShapeDtypeStruct(
                  (3, 2), jnp.float32, sharding=sharding.data_sharded(
                      sharding.make_mesh(1)))}}
    restored, _, source = checkpoint.restore_or_init(
        workdir, None, lambda: state, abstract_state=target)
    assert source == "workdir"
    assert restored["table"].sharding == sharding.replicated(mesh)
    assert restored["params"]["w"].sharding == target["params"]["w"].sharding
    np.testing.assert_array_equal(restored["table"],
                                  np.arange(32.0).reshape(8, 4))

    # Without a target, leaves without a sharding come back replicated.
    restored, _, _ = checkpoint.restore_or_init(workdir, None, lambda: {
        "table": jnp.zeros((8, 4)), "params": {"w": jnp.zeros((3, 2))}})
    assert restored["table"].sharding.is_fully_replicated
    assert len(restored["table"].sharding.device_set) == 8
    params = checkpoint.restore_subtree(workdir, "params", {
        "w": jax.ShapeDtypeStruct((3, 2), jnp.float32,
                                  sharding=sharding.replicated(mesh))})
    assert len(params["w"].sharding.device_set) == 8
    print("OK")
""")


def test_restore_reshards_on_8_devices(tmp_path):
  run_on_fake_devices(_MULTI_DEVICE_SCRIPT, str(tmp_path), timeout=120)


def test_unfinished_saves_are_removed_when_a_run_opens_its_checkpoints(
    tmp_path):
  root = _save(tmp_path, 1, 2)
  leftover = root / "3.orbax-checkpoint-tmp-1700000000"
  (leftover / "state").mkdir(parents=True)
  (leftover / "state" / "partial").write_text("x")
  with checkpoint.Checkpointer(root, read_only=True) as c:
    assert c.all_steps() == [1, 2]
  assert leftover.exists()  # reading another run's checkpoints deletes nothing
  with checkpoint.Checkpointer(root) as c:
    assert c.latest_step() == 2
  assert not leftover.exists()
  assert sorted(p.name for p in root.iterdir()) == ["1", "2"]


def test_a_full_disk_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
  root = _save(tmp_path, 1)
  with checkpoint.Checkpointer(root) as ckpt:
    def full(*args, **kwargs):
      try:
        raise OSError(errno.ENOSPC, "No space left on device")
      except OSError as e:
        raise RuntimeError("orbax: save failed") from e
    monkeypatch.setattr(ckpt._manager, "save", full)
    with pytest.raises(checkpoint.CheckpointError) as e:
      ckpt.save(2, _trained(2))
  msg = str(e.value)
  assert "No space left on device" in msg and "resumes from step 1" in msg
  assert "\n" not in msg


def test_too_little_space_for_one_checkpoint_fails_before_training(
    tmp_path, monkeypatch):
  state = {"params": np.zeros((256, 1024), np.float32)}  # 1 MiB
  target = tmp_path / "run" / "checkpoints"  # not created yet
  assert checkpoint.check_space(target, state) == 2**20
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(
      checkpoint.shutil, "disk_usage",
      lambda p: usage._replace(free=int(1.1 * 2**20)))
  with pytest.raises(checkpoint.CheckpointError) as e:
    checkpoint.check_space(target, state)
  msg = str(e.value)
  assert str(target) in msg and "1 MiB free" in msg and "takes 1 MiB" in msg
  assert "--workdir" in msg and "\n" not in msg
