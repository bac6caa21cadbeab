"""Multi-process JAX start-up for TPU pods, GPU clusters and CPU hosts.

Call `initialize(config)` once, first thing in `main`, before anything touches
a device. It picks, in this order:

1. `config.distributed == False`: nothing (a single process).
2. An explicit coordinator, from the config (`coordinator_address`,
   `num_processes`, `process_id`) or from the environment
   (`METAVOS_COORDINATOR`, `METAVOS_NUM_PROCESSES`, `METAVOS_PROCESS_ID`):
   GPU hosts without a scheduler, or several CPU processes.
3. A SLURM job step (`srun`) with more than one task: JAX derives the
   coordinator, process count and id from the `SLURM_*` variables.
4. A Cloud TPU VM (libtpu installed and TPU chips present), or
   `config.distributed == True`: JAX asks the TPU metadata for the topology.
5. Otherwise nothing: a plain single process.

Commands:

  # TPU pod: the same command on every worker. The workdir must be shared by
  # all workers (e.g. an NFS mount): Orbax writes one checkpoint together.
  gcloud compute tpus tpu-vm ssh $TPU --worker=all --command \
      "python -m metavos.main --config=configs/osvos.py --workdir=$WORKDIR"
  # SLURM, one task per GPU host:
  srun --ntasks=4 --gpus-per-task=8 python -m metavos.main ...
  # Two CPU processes on one machine (tests, debugging):
  METAVOS_COORDINATOR=127.0.0.1:12345 METAVOS_NUM_PROCESSES=2 \
      METAVOS_PROCESS_ID=0 python -m metavos.main ... &
  METAVOS_COORDINATOR=127.0.0.1:12345 METAVOS_NUM_PROCESSES=2 \
      METAVOS_PROCESS_ID=1 python -m metavos.main ...
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from typing import Any, Mapping, NamedTuple

from absl import logging
import jax
import numpy as np

ENV_COORDINATOR = "METAVOS_COORDINATOR"
ENV_NUM_PROCESSES = "METAVOS_NUM_PROCESSES"
ENV_PROCESS_ID = "METAVOS_PROCESS_ID"


class ProcessInfo(NamedTuple):
  """Where this process sits in the (possibly multi-process) job."""
  process_index: int
  process_count: int
  local_device_count: int
  device_count: int
  mode: str  # "single", "explicit", "slurm", "auto" or "already".


def _setting(source: Any, name: str) -> Any:
  """Reads `name` from a ConfigDict, absl FLAGS, a mapping or an object."""
  if source is None:
    return None
  if isinstance(source, Mapping):
    return source.get(name)
  try:
    return getattr(source, name)
  except (AttributeError, KeyError):  # An unset field or an undefined flag.
    return None


def _int_setting(source: Any, name: str, env: str) -> int | None:
  value = _setting(source, name)
  if value is None:
    value = os.environ.get(env)
  if value is None or value == "":
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"distributed.initialize: {name} (or ${env}) must be an "
                     f"integer, got {value!r}.") from None


def _on_tpu_vm() -> bool:
  """True on a Cloud TPU VM, checked without starting a JAX backend."""
  if importlib.util.find_spec("libtpu") is None:
    return False
  # TPU chips appear as /dev/accel* (v2-v4) or /dev/vfio/<n> (v5+).
  return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def _slurm_multi_task() -> bool:
  """True inside an `srun` step of several tasks.

  `SLURM_STEP_NODELIST` exists only inside a step: a lone `python` under
  `salloc --ntasks=4` must not wait for three processes that never start.
  """
  if "SLURM_STEP_NODELIST" not in os.environ:
    return False
  try:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1
  except ValueError:
    return False


def _use_gloo_for_cpu() -> None:
  """Cross-process computations on CPU need a collectives library.

  Newer jax defaults to gloo; older ones default to none, and cross-process
  CPU computations then fail at run time. GPU and TPU ignore the setting.
  """
  if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")


def _start(config_or_flags: Any) -> str:
  """Starts the distributed runtime if needed; returns which way it chose."""
  wanted = _setting(config_or_flags, "distributed")
  if wanted is False:
    return "single"
  coordinator = (_setting(config_or_flags, "coordinator_address")
                 or os.environ.get(ENV_COORDINATOR))
  if coordinator:
    num_processes = _int_setting(config_or_flags, "num_processes",
                                 ENV_NUM_PROCESSES)
    process_id = _int_setting(config_or_flags, "process_id", ENV_PROCESS_ID)
    if num_processes is None or process_id is None:
      raise ValueError(
          f"distributed.initialize: coordinator {coordinator} given but "
          f"num_processes={num_processes}, process_id={process_id}. Fix: set "
          f"${ENV_NUM_PROCESSES} and ${ENV_PROCESS_ID} (or the config fields) "
          "on every process.")
    _use_gloo_for_cpu()
    jax.distributed.initialize(coordinator_address=coordinator,
                               num_processes=num_processes,
                               process_id=process_id)
    return "explicit"
  if _slurm_multi_task():
    _use_gloo_for_cpu()
    jax.distributed.initialize()  # JAX's SLURM detection reads SLURM_*.
    return "slurm"
  if wanted or _on_tpu_vm():
    jax.distributed.initialize()  # TPU topology comes from the VM metadata.
    return "auto"
  return "single"


def initialize(config_or_flags: Any = None) -> ProcessInfo:
  """Initialises multi-process JAX when the job has several processes.

  Must run before any JAX computation or device query. Safe to call twice.

  Args:
    config_or_flags: a ConfigDict, absl FLAGS, mapping or None. Optional
      fields: `distributed` (True forces `jax.distributed.initialize()`,
      False forbids it, None detects), `coordinator_address`,
      `num_processes`, `process_id`.

  Returns:
    This process's index and the process and device counts.
  """
  if jax.distributed.is_initialized():
    mode = "already"
  else:
    mode = _start(config_or_flags)
  info = ProcessInfo(process_index=jax.process_index(),
                     process_count=jax.process_count(),
                     local_device_count=jax.local_device_count(),
                     device_count=jax.device_count(), mode=mode)
  logging.info("JAX process %d of %d (%s start), %d local of %d devices (%s).",
               info.process_index, info.process_count, mode,
               info.local_device_count, info.device_count,
               jax.devices()[0].platform)
  return info


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (no-op alone)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def gather_json(obj: Any) -> list[Any]:
  """Every process's JSON-serialisable `obj`, in process order, on every
  process (`[obj]` alone). Floats round-trip exactly (JSON writes repr),
  NaN included; dict keys become strings."""
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(
      np.array([data.size], np.int32))).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  every = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(bytes(every[i, :n]).decode())
          for i, n in enumerate(sizes)]
