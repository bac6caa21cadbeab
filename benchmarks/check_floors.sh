#!/usr/bin/env bash
# Are setup.cfg's version floors true? Installs metavos with every floor
# pinned in a fresh venv and runs the suite's fast part there (37 files; the
# slow end-to-end and multi-device files are left out).
#
#   bash benchmarks/check_floors.sh [VENV]      # default /tmp/metavos-floors
#
# 2026-12-03, Python 3.11.7, this CPU box: 392 passed, 1 skipped (178 s),
# before grain (and tests/test_data_pipeline.py) were added.
set -euo pipefail
V=${1:-/tmp/metavos-floors}
cd "$(dirname "$0")/.."
python3 -m venv "$V"
. "$V/bin/activate"
python -m pip install -q --upgrade pip
cat > "$V/floors.txt" <<'PINS'
jax==0.8.2
jaxlib==0.8.2
flax==0.12.2
optax==0.2.5
orbax-checkpoint==0.12.0
numpy==2.0.2
tensorflow-datasets==4.9.9
array_record==0.5.0
pillow==10.0.0
ml-collections==0.1.1
h5py==3.11.0
scipy==1.13.1
absl-py==2.0.0
etils==1.12.0
tensorboardX==2.6
grain==0.2.18
PINS
python -m pip install -q -c "$V/floors.txt" -e '.[test]'
python -c "import jax, flax, optax, numpy; print('floors:', jax.__version__, flax.__version__, optax.__version__, numpy.__version__)"
python -m pytest -q -p no:cacheprovider \
  tests/test_memory_bank.py tests/test_memory_network.py tests/test_memory_xmem.py \
  tests/test_memory_losses.py tests/test_memory_propagate.py tests/test_models.py \
  tests/test_models_conv.py tests/test_models_vgg.py tests/test_models_pretrained.py \
  tests/test_data_davis.py tests/test_data_io.py tests/test_data_clips.py \
  tests/test_data_pipeline.py \
  tests/test_data_labels.py tests/test_data_synthetic.py tests/test_data_tfds.py \
  tests/test_data_writers.py tests/test_data_youtube_vos.py tests/test_metrics_davis.py \
  tests/test_metrics_parity.py tests/test_finetune_inner_loop.py tests/test_finetune_losses.py \
  tests/test_finetune_lrs.py tests/test_finetune_augment.py tests/test_runtime_checkpoint.py \
  tests/test_runtime_metric_writer.py tests/test_runtime_sharding.py \
  tests/test_runtime_distributed.py tests/test_runtime_files.py \
  tests/test_runtime_config_fields.py tests/test_runtime_chunking.py \
  tests/test_runtime_platform.py tests/test_configs_args.py tests/test_methods_validate.py \
  tests/test_methods_train_loop.py tests/test_multihost_eval.py tests/test_evaluate_cli.py
