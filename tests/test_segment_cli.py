"""Segment your own video: `metavos.segment` as a function and as a program."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import _smoke_run
from metavos import segment
from metavos.data import io
from metavos.data.davis import DavisDataset
from metavos.data.errors import DataError
from metavos.methods import registry

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run():
  """(workdir of the trained smoke run, its first val video)."""
  workdir, _ = _smoke_run.trained()
  ds = DavisDataset(os.path.join(workdir, "synthetic_data"), split="val")
  return pathlib.Path(workdir), ds, ds.sequences[0]


def _read_masks(folder, names):
  return np.stack([io.read_mask(pathlib.Path(folder) / f"{n}.png")
                   for n in names])


def test_cli_on_an_animation_reproduces_the_evaluation(run, tmp_path):
  """The frames of a val video as a (lossless) animated PNG, annotated on
  frame 0: the program writes the masks the evaluation loop wrote."""
  workdir, ds, name = run
  video = ds.load(name)
  clip = tmp_path / "clip.png"
  frames = [Image.fromarray(f) for f in video.frames]
  frames[0].save(clip, save_all=True, append_images=frames[1:])
  mask = tmp_path / "first.png"
  io.write_mask_png(mask, video.masks[0])
  out = tmp_path / "out"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  proc = subprocess.run(
      [sys.executable, "-m", "metavos.segment", f"--video={clip}",
       f"--mask={mask}", f"--config={_smoke_run.CONFIG}",
       f"--restore={workdir}", f"--out={out}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"Wrote {video.num_frames} masks" in proc.stdout
  names = [f"{t:05d}" for t in range(video.num_frames)]
  assert sorted(os.listdir(out / "masks")) == [f"{n}.png" for n in names]
  got = _read_masks(out / "masks", names)
  expected = _read_masks(workdir / "results" / name, video.frame_names)
  assert expected[1:].any()  # the model predicts something to compare
  np.testing.assert_array_equal(got, expected)
  with Image.open(out / "masks" / "00001.png") as im:
    assert im.mode == "P"
    assert np.array_equal(np.asarray(im.getpalette()[:9]),
                          io.davis_palette()[:3].reshape(-1))
  with Image.open(out / "overlay.gif") as gif:
    assert gif.n_frames == video.num_frames and gif.size == (64, 48)


def test_a_later_annotated_frame_is_where_the_objects_start():
  """--first_frame=N: the video the segmenter sees has the mask at frame N
  only, and every object starts there (the segmenter leaves earlier frames
  as background)."""
  frames = np.zeros((5, 8, 10, 3), np.uint8)
  mask = np.zeros((8, 10), np.uint8)
  mask[1:3, 1:3], mask[5:7, 5:9], mask[0, 9] = 3, 1, 255
  video = segment.make_video("v", frames, list("abcde"), mask, first_frame=2)
  assert video.object_ids == (1, 3)
  assert video.first_frame == {1: 2, 3: 2}
  np.testing.assert_array_equal(video.annotated, [0, 0, 1, 0, 0])
  np.testing.assert_array_equal(video.masks[2], mask)
  assert not video.masks[[0, 1, 3, 4]].any()
  assert video.frame_names == tuple("abcde")


def _frames_dir(tmp_path, n=3, size=(48, 64)):
  folder = tmp_path / "frames"
  folder.mkdir()
  for t in range(n):
    Image.fromarray(np.full(size + (3,), 40 * t, np.uint8)).save(
        folder / f"{t:05d}.jpg")
  return folder


def _mask(size=(48, 64), value=1):
  m = np.zeros(size, np.uint8)
  m[10:20, 10:30] = value
  return m


@pytest.mark.parametrize("case,match", [
    ("empty_folder", "no frames"),
    ("missing", r"frames_typo: no such frame folder or video file. Fix: "
                r"pass --frames=.* or --video="),
    ("corrupt_frame", "00001.jpg: corrupt or truncated image"),
    ("frame_sizes", "00002.jpg: frame is 24x32 but"),
    ("mask_size", "first.png: mask is 24x32 but the frames are 48x64. Fix: "
                  "annotate frame 00000"),
    ("empty_mask", "first.png: mask contains no object"),
    ("mp4", r"clip.mp4: .*Fix: extract its frames .*ffmpeg -i"),
    ("first_frame", "first_frame=7 but the video has 3 frames"),
])
def test_bad_inputs_name_the_file_and_the_fix(tmp_path, case, match):
  frames = _frames_dir(tmp_path)
  mask_path = tmp_path / "first.png"
  io.write_mask_png(mask_path, _mask())
  kwargs = {}
  if case == "empty_folder":
    for f in frames.iterdir():
      f.unlink()
  elif case == "missing":
    frames = tmp_path / "frames_typo"
  elif case == "corrupt_frame":
    (frames / "00001.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  elif case == "frame_sizes":
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(frames / "00002.jpg")
  elif case == "mask_size":
    io.write_mask_png(mask_path, _mask((24, 32)))
  elif case == "empty_mask":
    io.write_mask_png(mask_path, np.zeros((48, 64), np.uint8))
  elif case == "mp4":
    frames = tmp_path / "clip.mp4"
    frames.write_bytes(b"\x00\x00\x00\x18ftypmp42")
  elif case == "first_frame":
    kwargs["first_frame"] = 7
  config = _smoke_run.config()
  with pytest.raises(DataError, match=match):
    segment.segment_video(config, tmp_path / "no_checkpoint", str(frames),
                          str(mask_path), tmp_path / "out", **kwargs)
  assert not (tmp_path / "out").exists()  # nothing half-written


def test_grayscale_png_mask_is_object_one(tmp_path):
  path = tmp_path / "m.png"
  Image.fromarray(_mask(value=255), mode="L").save(path)
  ids = segment.load_first_mask(str(path), (48, 64), "00000")
  assert set(np.unique(ids)) == {0, 1}  # a 0/255 PNG is one object


def test_registry_load_segmenter():
  assert registry.load_segmenter("osvos").__module__ == "metavos.methods.osvos"
  with pytest.raises(ValueError, match="available"):
    registry.load_segmenter("nope")
