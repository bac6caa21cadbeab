#!/usr/bin/env bash
# Meta-train e-OSVOS on a Cloud TPU pod slice. Every worker runs the same
# command; `config.distributed=True` makes metavos call
# jax.distributed.initialize(), which finds the other workers by itself.
#
#   ZONE=us-central2-b TPU=metavos-v4-32 TYPE=v4-32 BUCKET=gs://my-bucket \
#     bash launch/tpu_pod.sh create|install|data|train|delete
#
# Data: build the TFDS array_record files once (from any machine that has
# the DAVIS folder) and copy them to the bucket; each process then reads only
# its own shard (metavos.data.tfds_builder.load_split).
set -euo pipefail
: "${ZONE:?set ZONE}" "${TPU:?set TPU (the VM name)}" "${BUCKET:?set BUCKET}"
TYPE=${TYPE:-v4-32}
VERSION=${VERSION:-tpu-ubuntu2204-base}
CONFIG=${CONFIG:-configs/eosvos.py:davis17_tpu}
WORKDIR=${WORKDIR:-$BUCKET/runs/eosvos_davis17}
ssh_all() { gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all --command="$1"; }

case "${1:-}" in
  create)
    gcloud compute tpus tpu-vm create "$TPU" --zone="$ZONE" \
      --accelerator-type="$TYPE" --version="$VERSION" ;;
  install)
    # Copy this checkout to every worker and install it with TPU jax.
    gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all \
      "$(git rev-parse --show-toplevel)" "$TPU":~/metavos
    ssh_all "cd ~/metavos && python3 -m venv .venv && . .venv/bin/activate && \
      pip install -U pip && pip install -e '.[tpu]'" ;;
  data)
    # Run where the DAVIS folder is (DAVIS=/path/to/DAVIS), then upload.
    : "${DAVIS:?set DAVIS to the DAVIS root}"
    python -c "from metavos.data import tfds_builder as t; \
      t.build('$DAVIS', '/tmp/metavos_tfds', year=2017, resolution='480p')"
    gsutil -m cp -r /tmp/metavos_tfds "$BUCKET/tfds" ;;
  train)
    ssh_all "cd ~/metavos && . .venv/bin/activate && \
      gsutil -m cp -r $BUCKET/tfds /tmp/metavos_tfds && \
      python -m metavos.main --config=$CONFIG --workdir=$WORKDIR \
        --config.distributed=True --config.data.kind=tfds \
        --config.data.root=/tmp/metavos_tfds" ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU" --zone="$ZONE" --quiet ;;
  *)
    echo "usage: $0 create|install|data|train|delete" >&2; exit 2 ;;
esac
