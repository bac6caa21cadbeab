"""How well test-time fine-tuning fits the annotated frame, per schedule.

For one OSVOS checkpoint and one video: fine-tune on frame 0 with each
`optimizer:rate:steps` schedule (the rest of the fine-tuning as the config
sets it), then report the final support loss, J on frame 0 itself (what
the schedule fitted; evaluation never scores it, it writes the given mask)
and J on frames 1-3 (nearly the same picture, so a fit that does not carry
over to them will not carry over further), with the seconds it took.

  python -m benchmarks.osvos_support_fit runs/osvos_vgg16 dance-jump \
      sgd:2e-3:100 adam:1e-4:100 [--preset=davis16_cpu,backbone=vgg16] \
      [--bank=16 --scale_range=0.75,1.25]
"""

import argparse
import time

import jax
import numpy as np

from configs import osvos as osvos_config
from metavos.data import davis
from metavos.methods import osvos
from metavos.metrics.davis import db_eval_iou

DEFAULT_ROOT = "../shared/datasets/DAVIS2016-train-240p"


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir", help="a training run (reads <workdir>/checkpoints)")
  parser.add_argument("video")
  parser.add_argument("schedules", nargs="+", help="optimizer:rate:steps")
  parser.add_argument("--preset", default="davis16_cpu,backbone=vgg16",
                      help="the configs/osvos.py recipe")
  parser.add_argument("--bank", type=int, default=None,
                      help="finetune.bank (default: the preset's; the "
                      "2026-12-06 rows of BENCHMARKS.md ran with 16)")
  parser.add_argument("--scale_range", default=None,
                      help="LOW,HIGH: finetune.augment.scale_range (default: "
                      "the preset's; the 2026-12-06 rows ran with 0.75,1.25)")
  parser.add_argument("--root", default=DEFAULT_ROOT)
  parser.add_argument("--split", default="dev")
  args = parser.parse_args(argv)
  config = osvos_config.get_config(args.preset)
  if args.bank is not None:
    config.finetune.bank = args.bank
  if args.scale_range is not None:
    config.finetune.augment.scale_range = tuple(
        float(x) for x in args.scale_range.split(","))
  video = davis.DavisDataset(args.root, 2016, args.split, "240p").load(
      args.video)
  rows = []
  for spec in args.schedules:
    optimizer, rate, steps = spec.split(":")
    config.finetune.optimizer = optimizer
    config.finetune.lr = float(rate)
    config.finetune.num_steps = int(steps)
    segmenter = osvos.load_segmenter(config, args.workdir)
    t0 = time.perf_counter()
    probs, _, stats = segmenter.predict(video, jax.random.key(0))
    seconds = time.perf_counter() - t0
    obj = video.object_ids[0]
    gt, pred = video.masks == obj, probs[0] >= config.finetune.bg_threshold
    row = {"schedule": spec, "support loss": stats["final_support_loss"],
           "J frame 0": float(db_eval_iou(gt[0], pred[0])),
           "J frames 1-3": float(np.mean(db_eval_iou(gt[1:4], pred[1:4]))),
           "seconds": seconds}
    rows.append(row)
    print(f"| {args.video} | {spec} | {row['support loss']:.4f} | "
          f"{row['J frame 0']:.3f} | {row['J frames 1-3']:.3f} | "
          f"{seconds:.0f} |", flush=True)
  return rows


if __name__ == "__main__":
  main()
