"""Running a script on several fake CPU devices (the device count is fixed
when JAX starts, hence a subprocess)."""

import os
import pathlib
import subprocess
import sys


REPO = pathlib.Path(__file__).resolve().parent.parent


def run_on_fake_devices(script: str, *args: str, devices: int = 8,
                        marker: str = "OK", timeout: int = 600,
                        fast_compile: bool = True) -> str:
  """Runs `python -c script args...` with `devices` fake CPU devices (the
  device count is fixed when JAX starts, hence a subprocess) from the repo
  root; asserts it exits 0 and prints `marker`. Returns its stdout.

  `fast_compile`: XLA with most optimisations off, as the in-process
  `fast_compile` fixture (tiny inputs: compile time dominates).
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
      f"{os.environ.get('XLA_FLAGS', '')} "
      f"--xla_force_host_platform_device_count={devices}"))
  if fast_compile:
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  proc = subprocess.run([sys.executable, "-c", script, *args], env=env,
                        capture_output=True, text=True, timeout=timeout,
                        cwd=REPO, check=False)
  assert proc.returncode == 0 and marker in proc.stdout, (
      proc.stdout[-3000:] + proc.stderr[-3000:])
  return proc.stdout
