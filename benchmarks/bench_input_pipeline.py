r"""Input pipeline against dataset size: peak memory and batches per second.

Two ways to feed training, on N synthetic 480p videos (854x480, DAVIS
layout):

  in_memory  what metavos did before the grain pipeline: decode and resize
             the whole split once (`sampling.prepare`), then draw every
             batch synchronously from RAM
  stream     metavos.data.pipeline: index the split (masks read, frames
             checked from their headers), then a grain stream that decodes
             only the frames of each batch in `threads` threads, `prefetch`
             steps ahead

For each, the batches of the three samplers at their `davis16_cpu` recipe
sizes: OSVOS parent frames (batch 4 at 240x427), e-OSVOS tasks (batch 2, 1
support + 1 query, 120x214) and memory-network clips (batch 4 x 3 frames,
96x176). Each (mode, N) runs in a fresh process; printed per row: the setup
seconds (index or load, all three sizes), batches per second of each
sampler over `steps` steps (first batch excluded), what the last
sampler's videos hold (`held_mib`: for the stream, the pickled index a
worker process receives; in memory, the bytes of the frames and masks) and
the process's peak RSS.

The N videos are hard links to `distinct` generated ones (decoding costs
the same; the disk holds `distinct` videos): every video is a separate
sequence to the readers, indexed and decoded on its own.

  python -m benchmarks.bench_input_pipeline
  python -m benchmarks.bench_input_pipeline --videos=50,500,3000 \
      --in_memory_videos=50,500
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import resource
import subprocess
import sys
import time

import ml_collections

from benchmarks import common

HEIGHT, WIDTH = 480, 854
WORKLOADS = {  # sampler: (image size, batch size)
    "osvos_frames": ((240, 427), 4),
    "eosvos_tasks": ((120, 214), 2),
    "memory_clips": ((96, 176), 4),
}


def make_dataset(root: pathlib.Path, num_videos: int, frames: int,
                 distinct: int) -> pathlib.Path:
  """N videos in the DAVIS layout, hard links to `distinct` generated ones."""
  from metavos.data import synthetic  # pylint: disable=g-import-not-at-top
  source = root / "distinct"
  synthetic.ensure(source, num_videos=distinct, num_frames=frames,
                   height=HEIGHT, width=WIDTH, max_objects=3, seed=0,
                   splits={"train": distinct})
  out = root / f"n{num_videos}"
  if (out / "ImageSets" / "2017" / "train.txt").exists():
    return out
  names = []
  for i in range(num_videos):
    name = f"video-{i:05d}"
    names.append(name)
    src = synthetic.sequence_name(i % distinct)
    for kind in ("JPEGImages", "Annotations"):
      folder = out / kind / "480p" / name
      folder.mkdir(parents=True, exist_ok=True)
      for f in (source / kind / "480p" / src).iterdir():
        target = folder / f.name
        if not target.exists():
          os.link(f, target)
  sets = out / "ImageSets" / "2017"
  sets.mkdir(parents=True, exist_ok=True)
  (sets / "train.txt").write_text("".join(f"{n}\n" for n in names))
  return out


def _samplers(videos):
  from metavos.data import clips, sampling  # pylint: disable=g-import-not-at-top
  return {
      "osvos_frames": sampling.FrameSampler(videos, seed=0),
      "eosvos_tasks": sampling.TaskSampler(videos, num_query=1, seed=0),
      "memory_clips": clips.ClipSampler(videos, 3, 2, 3, seed=0, flip=True),
  }


def run_one(root: str, mode: str, steps: int, threads: int,
            prefetch: int) -> dict:
  """One (mode, dataset) measurement, in this process."""
  from metavos.data import davis, pipeline, sampling  # pylint: disable=g-import-not-at-top
  from metavos.methods import train_loop  # pylint: disable=g-import-not-at-top
  ds = davis.DavisDataset(root, split="train")
  row = {"mode": mode, "videos": len(ds.sequences)}
  setup = 0.0
  loader = ml_collections.ConfigDict(
      dict(threads=threads, workers=0, prefetch=prefetch))
  for name, (size, batch) in WORKLOADS.items():
    start = time.perf_counter()
    if mode == "stream":
      videos = pipeline.index_videos(ds, size, threads)
    else:
      videos = sampling.prepare((ds.load(n) for n in ds.sequences), size)
    setup += time.perf_counter() - start
    if mode == "stream":  # the index, as a worker process receives it
      held_mib = len(pickle.dumps(videos)) / 2**20
    else:  # the frames and masks themselves
      held_mib = sum(v.frames.nbytes + v.masks.nbytes for v in videos) / 2**20
    sample = train_loop.batch_sampler(_samplers(videos)[name], batch)
    stream = pipeline.batches(sample, 0, steps + 1,
                              loader if mode == "stream" else None)
    next(stream)  # first batch: thread start-up
    start = time.perf_counter()
    for _ in range(steps):
      next(stream)
    row[name] = steps / (time.perf_counter() - start)
    del videos, stream, sample
  row["setup_s"] = setup
  row["held_mib"] = held_mib
  row["peak_rss_mib"] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 1024
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--videos", default="50,500,3000")
  parser.add_argument("--in_memory_videos", default="50,500",
                      help="sizes also run the old way (it holds every "
                      "frame in RAM: 3000 videos would need ~7 GiB here)")
  parser.add_argument("--frames", type=int, default=8)
  parser.add_argument("--distinct", type=int, default=25)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--prefetch", type=int, default=2)
  parser.add_argument("--root", default="/tmp/metavos_bench_input")
  parser.add_argument("--one", help=argparse.SUPPRESS)  # root,mode (child)
  args = parser.parse_args()
  if args.one:
    root, mode = args.one.split(",")
    print(json.dumps(run_one(root, mode, args.steps, args.threads,
                             args.prefetch)))
    return
  print(common.machine_line())
  print(f"{args.frames} frames per video, {args.distinct} distinct videos, "
        f"{args.steps} steps per sampler, stream threads={args.threads} "
        f"prefetch={args.prefetch}; batches/s per sampler")
  header = ("mode", "videos", "setup_s", *WORKLOADS, "held_mib",
            "peak_rss_mib")
  print(" | ".join(header))
  in_memory = {int(n) for n in args.in_memory_videos.split(",") if n}
  for n in (int(n) for n in args.videos.split(",")):
    root = make_dataset(pathlib.Path(args.root), n, args.frames,
                        args.distinct)
    for mode in ("in_memory", "stream") if n in in_memory else ("stream",):
      out = subprocess.run(
          [sys.executable, "-m", "benchmarks.bench_input_pipeline",
           f"--one={root},{mode}", f"--steps={args.steps}",
           f"--threads={args.threads}", f"--prefetch={args.prefetch}"],
          capture_output=True, text=True, check=True,
          env=dict(os.environ, JAX_PLATFORMS="cpu"))
      row = json.loads(out.stdout.strip().splitlines()[-1])
      print(" | ".join(f"{row[k]:.1f}" if isinstance(row[k], float)
                       else str(row[k]) for k in header), flush=True)


if __name__ == "__main__":
  main()
