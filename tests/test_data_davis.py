"""Tests for metavos.data.davis and the `get_dataset` factory."""

import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from metavos.data import datasets, davis, io
from configs import common
from metavos.data.errors import DataError

REAL_DAVIS = pathlib.Path(common.DAVIS16_240P)  # ../shared beside the checkout
SIZE = (12, 16)


def _write_sequence(root, name, masks, *, resolution="480p", binary_l=False,
                    num_frames=None):
  """Writes frames and the given masks (None = no annotation file)."""
  num_frames = len(masks) if num_frames is None else num_frames
  image_dir = root / "JPEGImages" / resolution / name
  mask_dir = root / "Annotations" / resolution / name
  image_dir.mkdir(parents=True, exist_ok=True)
  mask_dir.mkdir(parents=True, exist_ok=True)
  for t in range(num_frames):
    Image.fromarray(np.full(SIZE + (3,), 10 * t, np.uint8)).save(
        image_dir / f"{t:05d}.jpg")
  for t, mask in enumerate(masks):
    if mask is None:
      continue
    if binary_l:
      Image.fromarray(mask).save(mask_dir / f"{t:05d}.png")
    else:
      io.write_mask_png(mask_dir / f"{t:05d}.png", mask)


def _mask(*ids):
  """A SIZE mask with object `ids[i]` in column block i (0 = none)."""
  mask = np.zeros(SIZE, np.uint8)
  for i, k in enumerate(ids):
    mask[2:8, 4 * i:4 * i + 3] = k
  return mask


def _split(root, year_or_res, split, lines):
  path = root / "ImageSets" / str(year_or_res) / f"{split}.txt"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture
def copy(synthetic_root, tmp_path):
  """A writable copy of the synthetic dataset."""
  return pathlib.Path(shutil.copytree(synthetic_root, tmp_path / "davis"))


def test_synthetic_loads_like_its_files(synthetic_root):
  ds = davis.DavisDataset(synthetic_root, split="train")
  assert ds.sequences == ["synthetic-000", "synthetic-001"] and len(ds) == 2
  videos = list(ds)
  for video in videos:
    assert video.frames.shape == (6, 48, 64, 3)
    assert video.masks.shape == (6, 48, 64) and video.annotated.all()
    assert video.object_ids == (1, 2) and video.first_frame == {1: 0, 2: 0}
    assert video.frame_names == tuple(f"{t:05d}" for t in range(6))
  png = synthetic_root / "Annotations/480p/synthetic-001/00003.png"
  np.testing.assert_array_equal(videos[1].masks[3], io.read_mask(png))


def test_split_none_lists_every_sequence_folder(synthetic_root):
  ds = davis.DavisDataset(synthetic_root, split=None)
  assert ds.sequences == ["synthetic-000", "synthetic-001", "synthetic-002"]
  assert ds.split_file is None


def test_year_2016_merges_objects_and_keeps_void(tmp_path):
  mask = _mask(1, 2, 255)
  _write_sequence(tmp_path, "a", [mask, mask])
  _split(tmp_path, 2016, "val", ["a"])
  _split(tmp_path, 2017, "val", ["a"])
  v2017 = davis.DavisDataset(tmp_path, 2017, "val").load("a")
  v2016 = davis.DavisDataset(tmp_path, 2016, "val").load("a")
  assert v2017.object_ids == (1, 2) and v2016.object_ids == (1,)
  np.testing.assert_array_equal(v2017.masks[0], mask)  # 255 stays void.
  np.testing.assert_array_equal(v2016.masks[0], _mask(1, 1, 255))


def test_2016_binary_l_masks_are_object_one(tmp_path):
  mask = _mask(255)  # DAVIS 2016: 255 is the object, not void.
  _write_sequence(tmp_path, "cow", [mask, mask], binary_l=True)
  _split(tmp_path, 2016, "train", ["cow"])
  video = davis.DavisDataset(tmp_path, 2016, "train").load("cow")
  assert video.object_ids == (1,)
  np.testing.assert_array_equal(video.masks[1], _mask(1))


def test_2016_release_split_style(tmp_path):
  for name in ("bear", "boat"):
    _write_sequence(tmp_path, name, [_mask(1)] * 3)
  lines = [f"/JPEGImages/480p/{n}/{t:05d}.jpg /Annotations/480p/{n}/{t:05d}.png"
           for n in ("boat", "bear") for t in range(3)]
  _split(tmp_path, "480p", "train", lines)
  ds = davis.DavisDataset(tmp_path, 2016, "train")
  assert ds.sequences == ["boat", "bear"]  # File order, each once.
  assert ds.split_file == tmp_path / "ImageSets/480p/train.txt"
  assert ds.load("bear").num_frames == 3


def test_2016_release_split_listed_frame_missing(tmp_path):
  _write_sequence(tmp_path, "bear", [_mask(1)] * 2)
  lines = [f"/JPEGImages/480p/bear/{t:05d}.jpg /Annotations/480p/bear/"
           f"{t:05d}.png" for t in range(3)]
  _split(tmp_path, "480p", "train", lines)
  ds = davis.DavisDataset(tmp_path, 2016, "train")
  with pytest.raises(DataError, match=r"bear/00002\.jpg: frame listed in"):
    ds.load("bear")


def test_resolution_folder_is_a_parameter(tmp_path):
  _write_sequence(tmp_path, "a", [_mask(1)], resolution="240p")
  _split(tmp_path, 2017, "train", ["a"])
  video = davis.DavisDataset(tmp_path, split="train", resolution="240p").load("a")
  assert video.size == SIZE
  with pytest.raises(DataError, match=r"480p: frame folder not found.*240p"):
    davis.DavisDataset(tmp_path, split="train", resolution="480p")


def test_first_frame_only_annotations(tmp_path):
  _write_sequence(tmp_path, "a", [_mask(1, 2)], num_frames=4)
  _split(tmp_path, 2017, "test", ["a"])
  video = davis.DavisDataset(tmp_path, split="test").load("a")
  assert video.annotated.tolist() == [True, False, False, False]
  assert video.object_ids == (1, 2) and not video.masks[1:].any()


def test_unknown_split_lists_split_files(synthetic_root):
  with pytest.raises(DataError, match=r"ImageSets/2017/nope\.txt: .*"
                     r"2017/train\.txt.*2017/val\.txt"):
    davis.DavisDataset(synthetic_root, split="nope")


def test_listed_sequence_without_frames(copy):
  shutil.rmtree(copy / "JPEGImages/480p/synthetic-002")
  with pytest.raises(DataError, match="480p/synthetic-002: sequence listed"):
    davis.DavisDataset(copy, split="val")


def test_missing_frame(copy):
  (copy / "JPEGImages/480p/synthetic-000/00002.jpg").unlink()
  (copy / "Annotations/480p/synthetic-000/00002.png").unlink()
  with pytest.raises(DataError, match=r"synthetic-000/00002\.jpg: frame missing"):
    davis.DavisDataset(copy, split="train").load("synthetic-000")


def test_annotation_without_frame(copy):
  (copy / "JPEGImages/480p/synthetic-000/00005.jpg").unlink()
  with pytest.raises(DataError, match=r"synthetic-000/00005\.png: annotation "
                     "has no matching frame"):
    davis.DavisDataset(copy, split="train").load("synthetic-000")


def test_mask_size_differs_from_frame(copy):
  path = copy / "Annotations/480p/synthetic-001/00004.png"
  io.write_mask_png(path, np.zeros((24, 32), np.uint8))
  with pytest.raises(DataError, match=r"00004\.png: mask is 24x32 but its frame"):
    davis.DavisDataset(copy, split="train").load("synthetic-001")


@pytest.mark.parametrize("folder,suffix", [("Annotations", "png"),
                                           ("JPEGImages", "jpg")])
def test_corrupt_file(copy, folder, suffix):
  path = copy / f"{folder}/480p/synthetic-000/00001.{suffix}"
  path.write_bytes(path.read_bytes()[:60])
  with pytest.raises(DataError, match=rf"00001\.{suffix}: corrupt or truncated"):
    davis.DavisDataset(copy, split="train").load("synthetic-000")


def test_empty_first_frame_mask(tmp_path):
  _write_sequence(tmp_path, "a", [_mask(), _mask(1)])
  _split(tmp_path, 2017, "train", ["a"])
  with pytest.raises(DataError, match=r"a/00000\.png: first annotated mask "
                     "contains no object"):
    davis.DavisDataset(tmp_path, split="train").load("a")


def test_new_object_later_is_error_unless_allowed(tmp_path):
  _write_sequence(tmp_path, "a", [_mask(1), _mask(1), _mask(1, 3)])
  _split(tmp_path, 2017, "train", ["a"])
  with pytest.raises(DataError, match=r"a/00002\.png: object id 3 is not in "
                     r"the first annotated mask .*a/00000\.png"):
    davis.DavisDataset(tmp_path, split="train").load("a")
  video = davis.DavisDataset(tmp_path, split="train",
                             allow_new_objects=True).load("a")
  assert video.object_ids == (1, 3) and video.first_frame == {1: 0, 3: 2}


def test_get_dataset_factory(synthetic_root):
  ds = datasets.get_dataset("davis", synthetic_root, split="val")
  assert isinstance(ds, davis.DavisDataset) and ds.sequences == ["synthetic-002"]
  with pytest.raises(ValueError, match="davis.*youtube_vos.*tfds"):
    datasets.get_dataset("kitti", synthetic_root)


@pytest.mark.skipif(not REAL_DAVIS.is_dir(),
                    reason=f"real DAVIS 2016 240p data not at {REAL_DAVIS}")
def test_real_davis_2016_240p():
  ds = davis.DavisDataset(REAL_DAVIS, year=2016, split="dev", resolution="240p")
  assert len(ds) == 5 and ds.sequences[0] == "bmx-bumps"
  for name in ds.sequences[:2]:
    video = ds.load(name)
    assert video.frames.shape[1:] == (240, 427, 3)
    assert video.masks.shape == video.frames.shape[:3]
    assert video.object_ids == (1,) and video.annotated.all()
    assert set(np.unique(video.masks)) == {0, 1}
    assert video.frame_names[0] == "00000"
