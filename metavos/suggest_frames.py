r"""Which frame should be annotated next? Ranks frames by model uncertainty.

  python -m metavos.suggest_frames --config=configs/osvos.py:davis16_cpu \
    --config.restore=runs/osvos_davis16/checkpoints --sequence=bmx-bumps \
    --annotated=0 --top=5

Fine-tunes on the `--annotated` frames (as the method's evaluation does),
segments every frame, and prints the unannotated frames with the highest
mean per-pixel entropy. `--output` also writes them as JSON.
"""

import json
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from metavos import configs
from metavos.finetune import suggest
from metavos.methods import registry, setup
from metavos.runtime import files

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/<method>.py[:arg]",
                                lock_config=True)
flags.DEFINE_string("workdir", "", "Run directory whose checkpoints to use "
                    "(else --config.restore).")
flags.DEFINE_string("sequence", None, "Sequence of config.data.split.")
flags.DEFINE_list("annotated", ["0"], "Frames whose masks are given.")
flags.DEFINE_integer("top", 5, "How many frames to print.")
flags.DEFINE_integer("min_gap", 2, "Skip frames this close to an annotated one.")
flags.DEFINE_string("output", "", "Optional JSON file for the ranking.")
flags.mark_flags_as_required(["config", "sequence"])


def suggest_frames(config, workdir: str, sequence: str, annotated, top: int,
                   min_gap: int = 2) -> list[dict]:
  """Returns the `top` most uncertain frames of `sequence` with scores."""
  bound = registry.load_segmenter(config.method)(config, workdir)
  ds = setup.open_split(config, setup.data_root(config, workdir),
                        config.data.split)
  video = ds.load(sequence)
  probs, _, _ = bound.predict(video, jax.random.key(config.seed),
                              [int(a) for a in annotated])
  scores = suggest.frame_uncertainty(probs)
  ranked = suggest.rank_frames(scores, annotated, min_gap)[:top]
  return [{"frame": t, "name": video.frame_names[t],
           "uncertainty": float(scores[t])} for t in ranked]


def main(argv):
  del argv
  ranked = suggest_frames(FLAGS.config, FLAGS.workdir, FLAGS.sequence,
                          [int(a) for a in FLAGS.annotated], FLAGS.top,
                          FLAGS.min_gap)
  for r in ranked:
    print(f"frame {r['frame']:5d} ({r['name']})  uncertainty {r['uncertainty']:.4f}")
  if FLAGS.output:
    files.atomic_write_text(FLAGS.output, json.dumps(ranked, indent=2))


if __name__ == "__main__":
  app.run(main, argv=configs.find_config_files(sys.argv))
