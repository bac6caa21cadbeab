"""Multi-host evaluation scores every video once: 2 JAX processes x 4 CPU
devices evaluating a TFDS split give the scores, results, digests and report
of 1 process x 8 devices.

Before, only process 0 evaluated, and on TFDS data `load_split` gave it its
own block of the split: a 2-process run scored half of the videos. The
segmenter here copies each object's first mask forward, shifted by a
random 0-2 pixels drawn from the video's key, so the scores also prove each
video gets the key of its index in the split whichever process segments it.
"""

import json
import os
import textwrap

from _multiprocess import run_alone_and_joined
from metavos.data import synthetic, tfds_builder

NUM_PROCESSES = 2

_WORKER = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from configs import stcn as stcn_config
    from metavos.methods import eval_loop
    from metavos.runtime import distributed

    built, workdir = sys.argv[1:3]
    info = distributed.initialize(None)  # METAVOS_* from the environment
    config = stcn_config.get_config("smoke")
    config.data.kind, config.data.root = "tfds", built
    config.data.split = "val"
    config.mode = "evaluate"
    config.eval.pictures = True

    def segment(video, rng):
      shift = int(jax.random.randint(rng, (), 0, 3))
      first = min(video.first_frame.values())
      pred = np.repeat(np.roll(video.masks[first], shift, axis=1)[None],
                       video.num_frames, axis=0)
      pred[pred == 255] = 0
      return pred, {"fps": 1.0, "shift": shift}

    metrics = eval_loop.evaluate_split(config, workdir, segment)
    print("DONE", info.process_index, info.process_count, jax.device_count(),
          json.dumps(sorted(metrics.get("per_object", {}))))
""")


def _tree(root):
  """relative path -> bytes of every file under `root`."""
  out = {}
  for folder, _, names in os.walk(root):
    for n in names:
      path = os.path.join(folder, n)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def test_two_processes_score_the_split_of_one(tmp_path):
  data = synthetic.generate(tmp_path / "data", num_videos=5, num_frames=5,
                            height=32, width=48, max_objects=2, seed=0,
                            splits={"train": 2, "val": 3})
  built = tmp_path / "tfds"
  tfds_builder.build(data, built, splits=("val",))
  # Each process alone would see only its block of the split.
  blocks = [tfds_builder.load_split(built, "val", p, NUM_PROCESSES).sequences
            for p in range(NUM_PROCESSES)]
  assert sorted(map(len, blocks)) == [1, 2]
  work = {"reference": tmp_path / "alone", "process_0": tmp_path / "joined",
          "process_1": tmp_path / "joined"}
  outputs = run_alone_and_joined(
      tmp_path, _WORKER, lambda name: [built, work[name]], NUM_PROCESSES)
  for name, output in outputs.items():
    assert " 8 " in output.split("DONE", 1)[1].split("\n", 1)[0], name

  alone, joined = tmp_path / "alone", tmp_path / "joined"
  load = lambda w, f: json.loads((w / f).read_text())
  ref, got = load(alone, "metrics.json"), load(joined, "metrics.json")
  names = [f"synthetic-00{i}" for i in (2, 3, 4)]
  assert sorted({k.rsplit("_", 1)[0] for k in ref["per_object"]}) == names
  assert got["global"] == ref["global"]
  assert got["per_object"] == ref["per_object"]
  # Every video once, segmented by one of the two processes, both busy,
  # with the same key-drawn shift as alone.
  t_ref = load(alone, "timing.json")["videos"]
  t_got = load(joined, "timing.json")["videos"]
  assert list(t_got) == list(t_ref) == names
  assert {t_got[n]["process"] for n in names} == {0, 1}
  assert [t_got[n]["shift"] for n in names] == [t_ref[n]["shift"]
                                                for n in names]
  # The same masks, and provenance listing the same sequences and digests.
  masks_ref, masks_got = _tree(alone / "results"), _tree(joined / "results")
  prov_ref = json.loads(masks_ref.pop("provenance.json"))
  prov_got = json.loads(masks_got.pop("provenance.json"))
  assert masks_got == masks_ref
  assert prov_got["sequences"] == prov_ref["sequences"] == names
  assert prov_got["digests"] == prov_ref["digests"]
  assert not (joined / "results.partial").exists()
  # The report shows every video, GIFs written by either process.
  report = (joined / "report.html").read_text()
  for n in names:
    assert f"pictures/{n}.gif" in report
    assert (joined / "pictures" / f"{n}.gif").exists()
