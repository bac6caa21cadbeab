r"""Command line: `python -m metavos.main --config=configs/eosvos.py:smoke --workdir=DIR`.

The logic lives in `metavos.train.train_and_evaluate`, importable from Colab.
"""

import logging as std_logging
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from metavos import configs, train
from metavos.runtime import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "configs/<method>.py[:arg]", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, results.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_orbax(record) -> bool:
  """Drops Orbax's per-save INFO chatter; keeps its warnings and errors."""
  return record.levelno > std_logging.INFO or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(_quiet_orbax)
  config = FLAGS.config
  # Logs process and device counts; a no-op for a single process.
  distributed.initialize(config)
  metrics = train.train_and_evaluate(config, FLAGS.workdir)
  if jax.process_index() == 0:
    print(train.describe_outputs(FLAGS.workdir, metrics), flush=True)


if __name__ == "__main__":
  app.run(main, argv=configs.find_config_files(sys.argv))
