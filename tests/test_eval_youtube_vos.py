"""Evaluating on YouTube-VOS writes the submission the official server
takes: Annotations/<video>/<frame>.png for the frames meta.json requests,
original sizes, palette PNGs, objects from the frame they enter; and the
zip of that tree."""

import json
import zipfile

import numpy as np
from PIL import Image

from configs import osvos
from metavos.data import writers
from metavos.methods import eval_loop
from test_data_youtube_vos import STEMS, SIZE, _mask, _write_split


def _config(root):
  config = osvos.get_config("smoke")
  config.data.kind = "youtube_vos"
  config.data.root = str(root)
  config.data.split = "valid"
  config.eval.pictures = False
  return config


def _segment(video, rng):
  """Each object where it was first given, from its first frame on (a
  stand-in for a method, so the written masks are known)."""
  del rng
  pred = np.zeros(video.masks.shape, np.uint8)
  for k, t in video.first_frame.items():
    pred[t:][:, video.masks[t] == k] = k
  return pred, {"fps": 1.0}


def test_evaluation_writes_the_server_submission(tmp_path):
  root = tmp_path / "ytvos"
  # vid_b: object 2 enters at the second frame; vid_c: one object, and the
  # server asks only for every other frame.
  meta = _write_split(root, "valid", {
      "vid_b": ({"00000": _mask(1), "00005": _mask(0, 2)},
                {1: STEMS, 2: STEMS[1:]}),
      "vid_c": ({"00000": _mask(3)}, {3: STEMS[::2]}),
  })
  workdir = tmp_path / "run"
  metrics = eval_loop.evaluate_split(_config(root), str(workdir), _segment)
  assert metrics == {}  # sparse ground truth: nothing to score here

  sub = workdir / eval_loop.SUBMISSION
  with zipfile.ZipFile(sub / "submission.zip") as archive:
    members = sorted(archive.namelist())
    expected = sorted(f"Annotations/{v}/{s}.png" for v, stems in
                      [("vid_b", STEMS), ("vid_c", STEMS[::2])] for s in stems)
    assert members == expected
    late = Image.open(archive.open("Annotations/vid_b/00005.png"))
    assert late.mode == "P" and late.size == SIZE[::-1]
    np.testing.assert_array_equal(np.asarray(late), _mask(1, 2))
    first = np.asarray(Image.open(archive.open("Annotations/vid_b/00000.png")))
    np.testing.assert_array_equal(first, _mask(1))  # 2 not yet there
  # The unzipped tree holds the same masks.
  np.testing.assert_array_equal(
      np.asarray(Image.open(sub / "Annotations" / "vid_c" / "00020.png")),
      _mask(3))
  assert json.loads((root / "valid" / "meta.json").read_text()) == meta


def test_a_partial_evaluation_writes_no_submission(tmp_path):
  root = tmp_path / "ytvos"
  _write_split(root, "valid", {
      "vid_b": ({"00000": _mask(1)}, {1: STEMS}),
      "vid_c": ({"00000": _mask(3)}, {3: STEMS}),
  })
  config = _config(root)
  config.data.max_eval_videos = 1
  workdir = tmp_path / "run"
  eval_loop.evaluate_split(config, str(workdir), _segment)
  assert not (workdir / eval_loop.SUBMISSION).exists()


def test_results_folder_reads_back_as_the_predictions(tmp_path):
  writers.write_davis_results(tmp_path, "v", ["a", "b"],
                              np.stack([_mask(1), _mask(0, 2)]))
  view = writers.ResultsFolder(tmp_path)
  assert list(view) == ["v"] and list(view["v"]) == ["a", "b"]
  np.testing.assert_array_equal(view["v"]["b"], _mask(0, 2))
  assert "w" not in view and "c" not in view["v"]
