"""Multi-process start-up: a real two-process CPU job on localhost."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

from metavos.runtime import distributed

_LAUNCH_VARS = (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
                distributed.ENV_PROCESS_ID, "SLURM_NTASKS")


@pytest.fixture
def clean_env(monkeypatch):
  for name in _LAUNCH_VARS:
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


@pytest.mark.parametrize("config", [
    None, {}, ml_collections.ConfigDict({"other": 1}),
    ml_collections.ConfigDict({"distributed": False,
                               "coordinator_address": "127.0.0.1:1"}),
])
def test_single_process_does_nothing(clean_env, config):
  info = distributed.initialize(config)
  assert info.mode == "single"
  assert (info.process_index, info.process_count) == (0, 1)
  assert info.device_count == jax.device_count()
  assert not jax.distributed.is_initialized()


def test_coordinator_without_process_counts_is_refused(clean_env):
  clean_env.setenv(distributed.ENV_COORDINATOR, "127.0.0.1:1")
  with pytest.raises(ValueError, match="METAVOS_NUM_PROCESSES"):
    distributed.initialize(None)
  clean_env.setenv(distributed.ENV_NUM_PROCESSES, "two")
  clean_env.setenv(distributed.ENV_PROCESS_ID, "0")
  with pytest.raises(ValueError, match="must be an integer, got 'two'"):
    distributed.initialize(None)
  assert not jax.distributed.is_initialized()


_WORKER = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from metavos.runtime import distributed, sharding

    info = distributed.initialize(None)  # Everything comes from METAVOS_*.
    mesh = sharding.make_mesh()
    full = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) ** 1.5
    local_size = sharding.per_process_batch_size(8, mesh)
    start = info.process_index * local_size
    batch = sharding.shard_batch({"x": full[start:start + local_size]}, mesh)
    weights = sharding.replicate(np.array([1.0, -2.0, 0.5], np.float32), mesh)

    column_sums = jax.jit(lambda b, w: (b["x"] * w).sum(axis=0),
                          out_shardings=sharding.replicated(mesh))(
                              batch, weights)
    psum = jax.jit(jax.shard_map(
        lambda x: jax.lax.psum(x.sum(axis=0), "data"),
        mesh=mesh, in_specs=P("data"), out_specs=P()))(batch["x"])
    print("RESULT " + json.dumps({
        "mode": info.mode, "process_index": info.process_index,
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "global_shape": list(batch["x"].shape),
        "column_sums": np.asarray(column_sums.addressable_data(0)).tolist(),
        "psum": np.asarray(psum.addressable_data(0)).tolist()}))
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_cpu_processes_compute_like_one(tmp_path):
  port = _free_port()
  procs = []
  for process_id in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(f"{os.environ.get('XLA_FLAGS', '')} "
                          "--xla_force_host_platform_device_count=2"),
               METAVOS_COORDINATOR=f"127.0.0.1:{port}",
               METAVOS_NUM_PROCESSES="2", METAVOS_PROCESS_ID=str(process_id))
    log = open(tmp_path / f"process_{process_id}.log", "w+")
    procs.append((subprocess.Popen([sys.executable, "-c", _WORKER], env=env,
                                   stdout=log, stderr=subprocess.STDOUT), log))
  results = []
  try:
    for proc, log in procs:
      proc.wait(timeout=120)
  finally:
    for proc, log in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for proc, log in procs:
    log.seek(0)
    output = log.read()
    log.close()
    assert proc.returncode == 0, output[-3000:]
    line = [l for l in output.splitlines() if l.startswith("RESULT ")][-1]
    results.append(json.loads(line[len("RESULT "):]))

  full = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) ** 1.5
  expected = (full * np.array([1.0, -2.0, 0.5], np.float32)).sum(axis=0)
  assert sorted(r["process_index"] for r in results) == [0, 1]
  for r in results:
    assert r["mode"] == "explicit"
    assert (r["process_count"], r["device_count"],
            r["local_device_count"]) == (2, 4, 2)
    assert r["global_shape"] == [8, 3]
    np.testing.assert_allclose(r["column_sums"], expected, rtol=1e-6)
    np.testing.assert_allclose(r["psum"], full.sum(axis=0), rtol=1e-6)
