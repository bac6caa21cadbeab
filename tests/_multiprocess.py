"""Starting JAX worker processes for the multi-host tests: one process
alone, or several joined through metavos.runtime.distributed on localhost."""

import os
import pathlib
import socket
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(tmp_path, name: str, script: str, args, devices: int,
          extra_env: dict):
  """Runs `python -c script *args` with `devices` CPU devices; returns
  (process, log file). `extra_env` holds the METAVOS_* variables of a
  multi-process job (none: a process alone)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1",
             XLA_FLAGS=(f"{os.environ.get('XLA_FLAGS', '')} "
                        f"--xla_force_host_platform_device_count={devices}"),
             **extra_env)
  for var in ("METAVOS_COORDINATOR", "METAVOS_NUM_PROCESSES",
              "METAVOS_PROCESS_ID"):
    if var not in extra_env:
      env.pop(var, None)
  log = open(tmp_path / f"{name}.log", "w+")
  proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                          env=env, cwd=REPO, stdout=log,
                          stderr=subprocess.STDOUT)
  return proc, log


def run_alone_and_joined(tmp_path, script: str, args_of, num_processes: int,
                         devices: int = 8, timeout: int = 400) -> dict:
  """Runs `script` once alone on `devices` devices ("reference") and as
  `num_processes` joined processes of devices / num_processes each
  ("process_<p>"), all at once; `args_of(name)` gives each its arguments.
  Returns name -> its output; fails on a non-zero exit, naming the run."""
  port = free_port()
  runs = {"reference": start(tmp_path, "reference", script,
                             args_of("reference"), devices, {})}
  for p in range(num_processes):
    runs[f"process_{p}"] = start(
        tmp_path, f"process_{p}", script, args_of(f"process_{p}"),
        devices // num_processes,
        {"METAVOS_COORDINATOR": f"127.0.0.1:{port}",
         "METAVOS_NUM_PROCESSES": str(num_processes),
         "METAVOS_PROCESS_ID": str(p)})
  try:
    for proc, _ in runs.values():
      proc.wait(timeout=timeout)
  finally:
    for proc, _ in runs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  outputs = {}
  for name, (proc, log) in runs.items():
    log.seek(0)
    outputs[name] = log.read()
    log.close()
    assert proc.returncode == 0, f"{name}:\n{outputs[name][-4000:]}"
  return outputs
