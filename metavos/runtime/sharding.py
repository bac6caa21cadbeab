"""The one place where metavos decides how arrays are laid out on devices.

metavos is data parallel: a 1-D mesh with a `data` axis spanning every device
of every process. Batches are split along their leading axis over `data`;
parameters, meta-parameters and optimiser state are replicated. Code elsewhere
asks this module for shardings instead of building its own, so changing the
layout (e.g. adding a model axis) is a change to this file only.

Typical use:

  mesh = sharding.make_mesh()
  params = sharding.replicate(params, mesh)
  step = jax.jit(train_step,
                 in_shardings=(sharding.replicated(mesh),
                               sharding.data_sharded(mesh)),
                 out_shardings=sharding.replicated(mesh), donate_argnums=0)
  local = sharding.per_process_batch_size(config.batch_size)
  params = step(params, sharding.shard_batch(next(local_batches), mesh))
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

PyTree = Any


def make_mesh(num_devices: int | None = None,
              axis_name: str = DATA_AXIS) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (default: all of them).

  Args:
    num_devices: how many devices to use; None for all (always the case in
      multi-process runs, where the mesh must span every process).
    axis_name: the mesh axis name batches are split along.

  Returns:
    A mesh with one axis, `axis_name`. Its axis type is `Auto`, so shardings
    inside jitted code are propagated by the compiler rather than being part
    of every array's type (`Explicit`, jax.make_mesh's default in new jax):
    model code then needs no sharding annotations.
  """
  available = jax.device_count()
  if num_devices is None:
    num_devices = available
  if not 1 <= num_devices <= available:
    raise ValueError(f"make_mesh: asked for {num_devices} devices but "
                     f"{available} are available. Fix: pass a number in "
                     f"[1, {available}] or None for all.")
  if jax.process_count() > 1 and num_devices != available:
    raise ValueError(f"make_mesh: a multi-process mesh must use all "
                     f"{available} devices, not {num_devices}. Fix: pass None.")
  return jax.make_mesh((num_devices,), (axis_name,),
                       axis_types=(AxisType.Auto,),
                       devices=jax.devices()[:num_devices])


def _data_axis(mesh: Mesh) -> str:
  return mesh.axis_names[0]


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device: parameters, meta-parameters, optimiser."""
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the data axis, other axes whole: batches."""
  return NamedSharding(mesh, P(_data_axis(mesh)))


def per_process_batch_size(global_batch_size: int,
                           mesh: Mesh | None = None) -> int:
  """How many examples each process loads for one global batch.

  Args:
    global_batch_size: examples per step over all devices (the config value).
    mesh: the mesh the batch is split over; default all devices.

  Returns:
    `global_batch_size / process_count`.

  Raises:
    ValueError: the global batch cannot be split evenly over the devices.
  """
  check_splits(global_batch_size,
               jax.device_count() if mesh is None else mesh.size)
  return global_batch_size // jax.process_count()


def check_splits(global_batch_size: int, num_devices: int) -> None:
  """Raises ValueError (with a fix) unless `global_batch_size` is a positive
  multiple of `num_devices`."""
  if global_batch_size <= 0 or global_batch_size % num_devices:
    lower = max(global_batch_size // num_devices, 1) * num_devices
    raise ValueError(
        f"Global batch size {global_batch_size} is not divisible by the "
        f"{num_devices} devices it is split over. Fix: set the batch size to a "
        f"multiple of {num_devices}, e.g. {lower} or {lower + num_devices}.")


def _check_local_leaf(path, leaf, num_local_devices: int) -> None:
  shape = np.shape(leaf)
  name = jax.tree_util.keystr(path) or "<batch>"
  if not shape or shape[0] % num_local_devices:
    raise ValueError(
        f"shard_batch: {name} has shape {shape}; its leading (batch) axis "
        f"must be a multiple of the {num_local_devices} devices of this "
        "process. Fix: load per_process_batch_size(global_batch_size) "
        "examples per process.")


def shard_batch(local_batch: PyTree, mesh: Mesh) -> PyTree:
  """Assembles per-process host batches into global device arrays.

  Each process passes its own slice of the global batch (leading axis
  `per_process_batch_size(...)`); the result has a leading axis of
  `process_count` times that, split over the data axis. Single-process runs
  take the same path.

  Args:
    local_batch: a pytree of numpy arrays, all with the same leading axis.
    mesh: the mesh to split over.

  Returns:
    The same pytree of `jax.Array`s sharded with `data_sharded(mesh)`.
  """
  num_local = len(mesh.local_devices)
  jax.tree_util.tree_map_with_path(
      lambda path, leaf: _check_local_leaf(path, leaf, num_local), local_batch)
  sharding = data_sharded(mesh)
  return jax.tree.map(
      lambda leaf: jax.make_array_from_process_local_data(sharding, leaf),
      local_batch)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Places a full copy of `tree` on every device of `mesh`.

  In multi-process runs every process must pass the same values (e.g. params
  initialised from the same seed); nothing checks it.
  """
  return jax.device_put(tree, replicated(mesh))


def batch_mean(fn, mesh: Mesh):
  """Runs `fn(replicated, batch)` on each device's shard; averages over `data`.

  `fn` must return a pytree of means over its (local) batch; with equal
  shards the average of the shard means is the global mean. This is an
  explicit data-parallel map (`shard_map` + `pmean`) rather than leaving the
  split to the SPMD partitioner: vmapping over per-task parameters turns
  convolutions into grouped convolutions, which the partitioner cannot split
  along the batch (XLA:CPU rejects the feature_group_count after splitting).

  Args:
    fn: `(replicated, batch) -> pytree of means`; pure.
    mesh: the data mesh.

  Returns:
    A function of the same arguments, for use inside `jax.jit`.
  """
  axis = _data_axis(mesh)

  def per_device(replicated_args, batch):
    # Mark the replicated inputs as device-varying so gradients taken inside
    # `fn` are this shard's own (differentiating an unvarying input would
    # insert an implicit psum); the pmean below is then the only reduction.
    replicated_args = jax.tree.map(
        lambda x: jax.lax.pcast(x, axis, to="varying"), replicated_args)
    return jax.lax.pmean(fn(replicated_args, batch), axis)

  return jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(axis)),
                       out_specs=P())
