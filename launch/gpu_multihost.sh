#!/usr/bin/env bash
# Multi-host GPU (or multi-process CPU) training: run this on every host.
# The coordinator address, process count and this process's id come from
# SLURM when run under `srun`, else from the environment:
#
#   METAVOS_COORDINATOR=host0:12345 METAVOS_NUM_PROCESSES=2 METAVOS_PROCESS_ID=0 \
#     bash launch/gpu_multihost.sh configs/eosvos.py:davis17_tpu runs/eosvos17
#
#   srun --nodes=4 --ntasks-per-node=1 bash launch/gpu_multihost.sh CONFIG WORKDIR
#
# metavos.runtime.distributed.initialize() reads these and calls
# jax.distributed.initialize(); the workdir must be on a shared filesystem.
set -euo pipefail
CONFIG=${1:?usage: $0 CONFIG WORKDIR [--config.key=value ...]}
WORKDIR=${2:?usage: $0 CONFIG WORKDIR [--config.key=value ...]}
shift 2
if [ -n "${SLURM_PROCID:-}" ] && [ -z "${METAVOS_COORDINATOR:-}" ]; then
  head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
  export METAVOS_COORDINATOR="$head:${METAVOS_PORT:-12345}"
  export METAVOS_NUM_PROCESSES="$SLURM_NTASKS"
  export METAVOS_PROCESS_ID="$SLURM_PROCID"
fi
exec python -m metavos.main --config="$CONFIG" --workdir="$WORKDIR" \
  --config.distributed=True "$@"
