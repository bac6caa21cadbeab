r"""Does annotating the suggested frame help more than an evenly spaced one?

For each video of the evaluation split: fine-tune on frame 0, rank the other
frames by uncertainty (metavos.finetune.suggest), then fine-tune again on
frame 0 + the top-ranked frame, and on frame 0 + the middle frame (the
paper's evenly spaced choice for 2 frames); score both with DAVIS J&F, and
on the frames that were not given (`score_unannotated.object_scores`), since
the DAVIS score counts the given frame as a perfect one.

  python -m benchmarks.bench_suggest_frames --config=configs/osvos.py:davis16_cpu \
    --config.model.name=fcn --config.restore=runs/davis16/parent/checkpoints
"""

import json

import jax
from absl import app, flags
from ml_collections import config_flags

from benchmarks import score_unannotated
from metavos.finetune import suggest
from metavos.methods import osvos, setup
from metavos.metrics import davis as davis_metrics

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "OSVOS config",
                                lock_config=True)
flags.DEFINE_integer("min_gap", 2, "Never suggest frames this close to 0.")


def main(argv):
  del argv
  config = FLAGS.config
  bound = osvos.load_segmenter(config, "")
  ds = setup.open_split(config, setup.data_root(config, ""), config.data.split)
  evals = {"evenly spaced": davis_metrics.DavisEvaluator(),
           "suggested": davis_metrics.DavisEvaluator()}
  picks = {}
  unannotated = {how: ([], []) for how in evals}
  for i, name in enumerate(ds.sequences):
    video = ds.load(name)
    rng = jax.random.key(i)
    probs, _, _ = bound.predict(video, rng, [0])
    scores = suggest.frame_uncertainty(probs)
    chosen = {"suggested": suggest.rank_frames(scores, [0], FLAGS.min_gap)[0],
              "evenly spaced": suggest.evenly_spaced(video.num_frames, 2)[1]}
    picks[name] = chosen
    for how, t in chosen.items():
      pred, _ = bound.segment(video, rng, [0, t])
      evals[how].add_video(name, video.masks, pred, video.object_ids)
      j, f = score_unannotated.object_scores(video, pred, [0, t])
      unannotated[how][0].extend(j)
      unannotated[how][1].extend(f)
  out = {how: e.result()["global"]["J&F-Mean"] for how, e in evals.items()}
  unseen = {how: (sum(j) / len(j) + sum(f) / len(f)) / 2
            for how, (j, f) in unannotated.items()}
  print(json.dumps({"J&F": out, "J&F unannotated frames": unseen,
                    "frames": picks}, indent=2))


if __name__ == "__main__":
  app.run(main)
