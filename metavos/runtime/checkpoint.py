"""Checkpoints: the one wrapper around Orbax that every method uses.

Layout of a checkpoint directory (the "manager root"):

  <workdir>/checkpoints/<step>/state/      the state pytree (Orbax standard)
  <workdir>/checkpoints/<step>/metadata/   JSON: data iterator position, config

Resume order, implemented by `restore_or_init`:

1. the latest checkpoint in `<workdir>/checkpoints` (a preempted run resumes
   where it stopped);
2. else the checkpoint at `restore_path` (start from another run: a manager
   root, a step directory, or that run's workdir);
3. else a fresh state from `init_fn()`.

Restores are sharding-aware: each array comes back with the sharding of its
abstract target, whatever layout it was saved from. A checkpoint that does
not match the target, or is unreadable, raises `CheckpointError` naming the
path, the difference and the fix: nothing falls back to a fresh state.

All processes of a multi-process job must make the same calls.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from typing import Any, Callable, Literal, Sequence

from absl import logging
from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

from metavos.runtime import metric_writer
from metavos.runtime import sharding as sharding_lib

PyTree = Any
Source = Literal["workdir", "restore_path", "init"]

CHECKPOINTS_DIR = "checkpoints"
STATE = "state"
METADATA = "metadata"
# Orbax writes a step to `<step>.orbax-checkpoint-tmp-<time>` and renames it
# when done.
_TMP_MARKER = ".orbax-checkpoint-tmp"
_MAX_LISTED = 8
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)


class CheckpointError(RuntimeError):
  """A checkpoint that is missing, incomplete, unreadable or mismatched."""

  def __init__(self, path, problem: str, fix: str):
    self.path = str(path)
    self.problem = problem
    self.fix = fix
    super().__init__(f"{self.path}: {problem}. Fix: {fix}")


def _absolute(path: str | os.PathLike) -> epath.Path:
  """Orbax's tensorstore writer refuses relative local paths: anchor them."""
  path = os.fspath(path)
  return epath.Path(path if "://" in path else os.path.abspath(path))


def checkpoint_dir(workdir: str | os.PathLike) -> epath.Path:
  """Where a run keeps its checkpoints."""
  return _absolute(workdir) / CHECKPOINTS_DIR


def abstract_like(tree: PyTree,
                  default_sharding: jax.sharding.Sharding | None = None
                  ) -> PyTree:
  """The restore target for `tree`: shape, dtype and sharding of each leaf.

  Args:
    tree: arrays, `jax.ShapeDtypeStruct`s (e.g. from `jax.eval_shape`) or
      Python scalars.
    default_sharding: for leaves that carry no sharding; default replicated
      over all devices.

  Returns:
    A pytree of `jax.ShapeDtypeStruct` with a sharding on every leaf.
  """
  if default_sharding is None:
    default_sharding = sharding_lib.replicated(sharding_lib.make_mesh())
  shaped = jax.eval_shape(lambda t: t, tree)

  def with_sharding(leaf, shape):
    sharding = getattr(leaf, "sharding", None) or default_sharding
    return jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding)

  return jax.tree.map(with_sharding, tree, shaped)


def _key_name(entry) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


def _path_name(path) -> str:
  # Orbax stores attribute and dict keys alike, so compare by name only.
  return "/".join(_key_name(entry) for entry in path)


def _expected(leaf: jax.ShapeDtypeStruct) -> tuple[tuple[int, ...], np.dtype]:
  """Shape and dtype as stored: typed PRNG keys are stored as their data."""
  if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    data = jax.eval_shape(jax.random.key_data, leaf)
    return tuple(data.shape), np.dtype(data.dtype)
  return tuple(leaf.shape), np.dtype(leaf.dtype)


def _differences(saved: PyTree, target: PyTree, prefix: str = "",
                 partial: bool = False) -> list[str]:
  """Lists how `target` differs from the saved tree metadata."""
  saved_leaves = {_path_name(p): m for p, m in
                  jax.tree_util.tree_flatten_with_path(saved)[0]}
  wanted = {"/".join(filter(None, (prefix, _path_name(p)))): leaf for p, leaf
            in jax.tree_util.tree_flatten_with_path(target)[0]}
  problems = [f"{name}: missing from the checkpoint"
              for name in wanted if name not in saved_leaves]
  if not partial:
    problems += [f"{name}: in the checkpoint but not in the target"
                 for name in saved_leaves if name not in wanted]
  for name, leaf in wanted.items():
    meta = saved_leaves.get(name)
    if meta is None:
      continue
    shape, dtype = _expected(leaf)
    if tuple(meta.shape) != shape:
      problems.append(f"{name}: shape {tuple(meta.shape)} saved, {shape} "
                      "expected")
    # Python scalars are saved as 64-bit, so only arrays have a fixed dtype.
    elif (not isinstance(meta, ocp.metadata.ScalarMetadata)
          and np.dtype(meta.dtype) != dtype):
      problems.append(f"{name}: dtype {meta.dtype} saved, {dtype} expected")
  return problems


def _check_complete(step_dir: epath.Path, previous: int | None) -> None:
  """Raises if `step_dir` is not a finished metavos checkpoint."""
  if _TMP_MARKER in step_dir.name:
    raise CheckpointError(step_dir, "is a save that never finished",
                          "pass the finished step directory next to it")
  missing = [name for name in (f"{STATE}/_METADATA", f"{METADATA}/{METADATA}")
             if not (step_dir / name).exists()]
  if missing:
    fallback = (f"delete it to resume from step {previous}"
                if previous is not None else "delete it")
    raise CheckpointError(
        step_dir, f"is incomplete (missing {', '.join(missing)}): a copy or "
        "save that did not finish, or not a metavos checkpoint",
        f"{fallback}, or copy the checkpoint again")


def _check_matches(step_dir: epath.Path, target: PyTree, prefix: str = "",
                   partial: bool = False) -> None:
  """Raises if the state saved in `step_dir` does not fit `target`."""
  try:
    saved = ocp.StandardCheckpointHandler().metadata(step_dir / STATE).tree
  except Exception as e:  # Orbax and tensorstore raise many types.
    raise CheckpointError(step_dir, f"could not be read ({_describe(e)})",
                          "copy the checkpoint again, or delete it to use an "
                          "earlier one") from e
  problems = _differences(saved, target, prefix, partial)
  if problems:
    listed = "; ".join(problems[:_MAX_LISTED])
    if len(problems) > _MAX_LISTED:
      listed += f"; and {len(problems) - _MAX_LISTED} more"
    raise CheckpointError(
        step_dir, f"does not match the state to restore: {listed}",
        "restore with the config that wrote this checkpoint, or start from "
        "another checkpoint (or delete this run's checkpoints to start afresh)")


def _describe(error: Exception) -> str:
  """The gist of an Orbax/tensorstore error, without its multi-KB spec dump."""
  text = (str(error).splitlines() or [""])[0].split(" [tensorstore_spec=")[0]
  return f"{type(error).__name__}: {text[:600]}"


def _previous_step(steps: Sequence[int], step: int) -> int | None:
  earlier = [s for s in steps if s < step]
  return max(earlier) if earlier else None


class Checkpointer:
  """Saves and restores `(state, metadata)` pairs under one directory.

  `state` is any pytree of arrays (and Python scalars); `metadata` is a
  JSON-compatible dict (ConfigDicts and numpy scalars are converted), e.g.
  `{"data_position": 1234, "config": config}`.
  """

  def __init__(self, directory: str | os.PathLike, *,
               max_to_keep: int | None = 3, save_interval_steps: int = 1,
               async_save: bool = True, read_only: bool = False):
    """Opens (or, unless `read_only`, creates) a checkpoint directory.

    Args:
      directory: the manager root, usually `checkpoint_dir(workdir)`.
      max_to_keep: how many recent checkpoints to keep; None keeps all.
      save_interval_steps: `save` only writes steps that are multiples of this
        (unless forced).
      async_save: write in a background thread; `wait_until_finished` waits.
      read_only: for restoring another run's checkpoints: never writes or
        deletes anything.
    """
    self.directory = _absolute(directory)
    if not read_only:
      remove_unfinished(self.directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep,
        save_interval_steps=0 if read_only else save_interval_steps,
        enable_async_checkpointing=async_save,
        read_only=read_only, create=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=(STATE, METADATA))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def step_dir(self, step: int) -> epath.Path:
    return self.directory / str(step)

  def save(self, step: int, state: PyTree, metadata: dict | None = None, *,
           force: bool = False) -> bool:
    """Saves `state` and `metadata` at `step` (asynchronously by default).

    Returns:
      Whether a checkpoint was started: False for steps that are not a
      multiple of `save_interval_steps` (unless `force`) or already saved.
    """
    if step in self._manager.all_steps():
      return False  # e.g. the final save of a run that just saved this step.
    # A JSON round trip now, so a bad value fails here and not in a thread.
    metadata = json.loads(json.dumps(metadata or {},
                                     default=metric_writer.json_default))
    with self._storage_errors():
      return self._manager.save(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardSave(state),
          METADATA: ocp.args.JsonSave(metadata)}), force=force)

  def restore(self, step: int | None, abstract_state: PyTree
              ) -> tuple[PyTree, dict]:
    """Restores the checkpoint at `step` (None: the latest).

    Args:
      step: which step to restore.
      abstract_state: the target: arrays or `jax.ShapeDtypeStruct`s whose
        shardings the restored arrays get (see `abstract_like`).

    Returns:
      `(state, metadata)`.

    Raises:
      CheckpointError: no such step, or the checkpoint is incomplete,
        unreadable, or does not match `abstract_state`.
    """
    steps = self.all_steps()
    if step is None:
      step = self.latest_step()
    if step is None or step not in steps:
      raise CheckpointError(
          self.directory, f"has no checkpoint for step {step} (steps: "
          f"{steps[-_MAX_LISTED:]})", "pass one of the steps listed")
    step_dir = self.step_dir(step)
    _check_complete(step_dir, _previous_step(steps, step))
    target = abstract_like(abstract_state)
    _check_matches(step_dir, target)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardRestore(target),
          METADATA: ocp.args.JsonRestore()}))
    except Exception as e:  # Orbax and tensorstore raise many types.
      raise CheckpointError(
          step_dir, f"could not be read ({_describe(e)})",
          "copy the checkpoint again, or delete it to use an earlier one"
      ) from e
    logging.info("Restored step %d from %s.", step, step_dir)
    return restored[STATE], dict(restored[METADATA] or {})

  def wait_until_finished(self) -> None:
    """Blocks until background saves are on disk; raises their errors."""
    with self._storage_errors():
      self._manager.wait_until_finished()

  @contextlib.contextmanager
  def _storage_errors(self):
    """A save that fails on the storage itself (full disk, read-only or
    forbidden folder) becomes one CheckpointError line saying what to do,
    instead of Orbax's nested tracebacks."""
    try:
      yield
    except Exception as e:  # Orbax wraps the OSError in its own types.
      cause = _os_error_in(e)
      if cause is None:
        raise
      latest = self.latest_step()
      raise CheckpointError(
          self.directory, f"a checkpoint could not be written "
          f"({os.strerror(cause.errno) if cause.errno else cause})",
          "free space (or make the folder writable, or pass another "
          "--workdir) and start the run again: it resumes from "
          + (f"step {latest}" if latest is not None else "the beginning")
      ) from None

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _os_error_in(error: BaseException) -> OSError | None:
  """The storage OSError (no space, read-only, forbidden) behind `error`."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
      return error
    error = error.__cause__ or error.__context__
  return None


def check_space(directory: str | os.PathLike, state: PyTree,
                margin: float = 1.2) -> int:
  """Fails before training when `directory` cannot hold one more save of
  `state` (its bytes x `margin`, for metadata and the temporary copy of a
  save in progress); returns the bytes one save takes. Remote paths
  (gs://...) are not checked."""
  need = int(sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(state)))
  path = os.fspath(directory)
  if "://" in path:
    return need
  probe = os.path.abspath(path)
  while not os.path.exists(probe):  # the folder may not exist yet
    probe = os.path.dirname(probe)
  free = shutil.disk_usage(probe).free
  if free < need * margin:
    raise CheckpointError(
        path, f"{free / 2**20:.0f} MiB free on its disk, but one checkpoint "
        f"of this run takes {need / 2**20:.0f} MiB (x{margin} while saving)",
        "free space there or pass a --workdir on a disk with room")
  return need


def remove_unfinished(directory: epath.Path) -> list[str]:
  """Deletes the temporary folders of saves that never finished (a kill or a
  full disk during a save); the run resumes from its last finished step.

  Returns:
    The names removed (process 0 removes; the others return []).
  """
  if jax.process_index() != 0 or not directory.is_dir():
    return []
  removed = []
  for path in directory.iterdir():
    if _TMP_MARKER in path.name:
      path.rmtree() if path.is_dir() else path.unlink()
      removed.append(path.name)
  if removed:
    logging.warning("Removed unfinished checkpoint saves %s from %s.",
                    removed, directory)
  return removed


def locate(path: str | os.PathLike) -> tuple[epath.Path, int]:
  """Finds the manager root and step a user-given checkpoint path names.

  Args:
    path: a step directory (`.../checkpoints/<step>`), a manager root
      (`.../checkpoints`, latest step) or a workdir holding `checkpoints/`.

  Returns:
    `(manager_root, step)`.
  """
  path = _absolute(path)
  usage = ("pass a checkpoint made by metavos: <workdir>, <workdir>/"
           f"{CHECKPOINTS_DIR} or <workdir>/{CHECKPOINTS_DIR}/<step>")
  if not path.exists():
    raise CheckpointError(path, "does not exist", usage)
  if (path / STATE).exists() or _TMP_MARKER in path.name:
    if not path.name.isdigit():
      _check_complete(path, None)  # Raises for unfinished saves.
      raise CheckpointError(path, "is not named by its step", usage)
    return path.parent, int(path.name)
  if (path / CHECKPOINTS_DIR).is_dir():
    path = path / CHECKPOINTS_DIR
  with Checkpointer(path, read_only=True) as checkpointer:
    step = checkpointer.latest_step()
  if step is None:
    listing = sorted(p.name for p in path.iterdir())[:_MAX_LISTED]
    raise CheckpointError(path, f"holds no finished checkpoint (it holds "
                          f"{listing})", usage)
  return path, step


def read_metadata(path: str | os.PathLike) -> dict:
  """The JSON metadata saved with the checkpoint `path` names (see `locate`);
  `{}` for a checkpoint saved without any."""
  root, step = locate(path)
  file = root / str(step) / METADATA / METADATA
  if not file.exists():
    return {}
  try:
    return dict(json.loads(file.read_text()) or {})
  except (OSError, ValueError) as e:
    raise CheckpointError(file, f"metadata could not be read ({e})",
                          "copy the checkpoint again") from e


def has_checkpoint(path: str | os.PathLike) -> bool:
  """Whether `path` (anything `locate` accepts) holds a finished checkpoint."""
  try:
    locate(path)
  except CheckpointError:
    return False
  return True


def _restore_latest(checkpointer: Checkpointer, abstract_state: PyTree
                    ) -> tuple[PyTree, dict] | None:
  if checkpointer.latest_step() is None:
    return None
  return checkpointer.restore(None, abstract_state)


def restore_or_init(workdir: str | os.PathLike | Checkpointer,
                    restore_path: str | os.PathLike | None,
                    init_fn: Callable[[], PyTree], *,
                    abstract_state: PyTree | None = None
                    ) -> tuple[PyTree, dict, Source]:
  """Resumes a run, starts it from another checkpoint, or initialises it.

  Args:
    workdir: this run's directory, whose `checkpoints/` is tried first; or
      the run's own `Checkpointer`.
    restore_path: another run's checkpoint, tried second; None to skip.
    init_fn: makes a fresh state; called only when nothing is restored.
    abstract_state: the restore target. Default `jax.eval_shape(init_fn)`,
      whose leaves carry a sharding only if `init_fn` is jitted with
      `out_shardings`; leaves without one are restored replicated.

  Returns:
    `(state, metadata, source)`; `source` is "workdir", "restore_path" or
    "init", and `metadata` is `{}` for "init".
  """
  if abstract_state is None:
    abstract_state = jax.eval_shape(init_fn)
  if isinstance(workdir, Checkpointer):
    own = workdir.directory
    restored = _restore_latest(workdir, abstract_state)
  else:
    own = checkpoint_dir(workdir)
    restored = None
    if own.is_dir():
      with Checkpointer(own, read_only=True) as checkpointer:
        restored = _restore_latest(checkpointer, abstract_state)
  if restored is not None:
    return *restored, "workdir"
  if restore_path:
    root, step = locate(restore_path)
    with Checkpointer(root, read_only=True) as checkpointer:
      state, metadata = checkpointer.restore(step, abstract_state)
    return state, metadata, "restore_path"
  logging.info("No checkpoint in %s and no restore path: initialising.", own)
  return init_fn(), {}, "init"


def restore_subtree(path: str | os.PathLike, key: str | Sequence[str],
                    abstract: PyTree) -> PyTree:
  """Restores one sub-tree of a saved state, e.g. only the model parameters.

  Args:
    path: a checkpoint as `locate` accepts it.
    key: where the sub-tree sits in the saved state: "params", or a path
      such as ("model", "params") or "model/params".
    abstract: the target for the sub-tree (see `abstract_like`).

  Returns:
    The sub-tree, with the shardings of `abstract`.
  """
  keys = key.split("/") if isinstance(key, str) else list(key)
  root, step = locate(path)
  step_dir = root / str(step)
  _check_complete(step_dir, None)
  subtree = abstract_like(abstract)
  target = subtree
  for name in reversed(keys):
    target = {name: target}
  _check_matches(step_dir, subtree, prefix="/".join(keys), partial=True)
  try:
    restored = ocp.PyTreeCheckpointer().restore(
        step_dir / STATE, args=ocp.args.PyTreeRestore(
            target,
            restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
  except Exception as e:  # Orbax and tensorstore raise many types.
    raise CheckpointError(step_dir, f"could not be read ({_describe(e)})",
                          "copy the checkpoint again") from e
  for name in keys:
    restored = restored[name]
  logging.info("Restored %s of step %d from %s.", "/".join(keys), step,
               step_dir)
  return restored
