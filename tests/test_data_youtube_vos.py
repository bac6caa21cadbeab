"""Tests for metavos.data.youtube_vos on a tiny tree written here."""

import json

import numpy as np
import pytest
from PIL import Image

from metavos.data import datasets, io, youtube_vos
from metavos.data.errors import DataError

SIZE = (10, 14)
STEMS = ["00000", "00005", "00010", "00015", "00020"]


def _mask(*ids):
  mask = np.zeros(SIZE, np.uint8)
  for i, k in enumerate(ids):
    mask[1:6, 4 * i:4 * i + 3] = k
  return mask


def _write_split(root, split, videos):
  """videos: name -> (annotations {stem: mask}, meta objects {id: stems})."""
  meta = {"videos": {}}
  for name, (annotations, objects) in videos.items():
    for stem in STEMS:
      path = root / split / "JPEGImages" / name / f"{stem}.jpg"
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(np.full(SIZE + (3,), 50, np.uint8)).save(path)
    for stem, mask in annotations.items():
      io.write_mask_png(root / split / "Annotations" / name / f"{stem}.png", mask)
    meta["videos"][name] = {"objects": {
        str(k): {"category": "cat", "frames": stems}
        for k, stems in objects.items()}}
  (root / split / "meta.json").write_text(json.dumps(meta))
  return meta


@pytest.fixture
def root(tmp_path):
  # Object 2 enters at the third frame; train masks every 10 frames here.
  _write_split(tmp_path, "train", {
      "vid_a": ({"00000": _mask(1), "00010": _mask(1, 2), "00020": _mask(0, 2)},
                {1: ["00000", "00010"], 2: ["00010", "00020"]}),
  })
  # Valid: each object annotated only in its first frame.
  _write_split(tmp_path, "valid", {
      "vid_b": ({"00000": _mask(1), "00005": _mask(0, 2)},
                {1: STEMS, 2: STEMS[1:]}),
  })
  return tmp_path


def test_sparse_annotations_and_late_objects(root):
  ds = youtube_vos.YouTubeVOSDataset(root, "train")
  assert ds.sequences == ["vid_a"]
  video = ds.load("vid_a")
  assert video.frame_names == tuple(STEMS)
  assert video.annotated.tolist() == [True, False, True, False, True]
  assert video.object_ids == (1, 2) and video.first_frame == {1: 0, 2: 2}
  assert not video.masks[1].any()
  np.testing.assert_array_equal(video.masks[2], _mask(1, 2))


def test_valid_split_first_frames(root):
  video = datasets.get_dataset("youtube_vos", root, split="valid").load("vid_b")
  assert video.first_frame == {1: 0, 2: 1}
  assert video.annotated.tolist() == [True, True, False, False, False]


def test_unknown_split_lists_splits(root):
  with pytest.raises(DataError, match=r"test/JPEGImages: no split 'test'.*"
                     r"\['train', 'valid'\]"):
    youtube_vos.YouTubeVOSDataset(root, "test")


def test_mask_id_missing_from_meta(tmp_path):
  _write_split(tmp_path, "train", {
      "v": ({"00000": _mask(1), "00010": _mask(1, 7)}, {1: ["00000"]})})
  with pytest.raises(DataError, match=r"v/00010\.png: object id 7 is not "
                     "listed"):
    youtube_vos.YouTubeVOSDataset(tmp_path, "train").load("v")


def test_meta_first_frame_without_object(tmp_path):
  _write_split(tmp_path, "valid", {
      "v": ({"00000": _mask(1), "00005": _mask(1)}, {1: STEMS, 2: STEMS[1:]})})
  with pytest.raises(DataError, match=r"v/00005\.png: .*object 2 first "
                     "appears"):
    youtube_vos.YouTubeVOSDataset(tmp_path, "valid").load("v")


def test_annotation_without_frame(root):
  (root / "train/JPEGImages/vid_a/00010.jpg").unlink()
  with pytest.raises(DataError, match=r"vid_a/00010\.png: annotation has no "
                     "matching frame"):
    youtube_vos.YouTubeVOSDataset(root, "train").load("vid_a")


def test_frame_listed_in_meta_missing(root):
  (root / "valid/JPEGImages/vid_b/00015.jpg").unlink()
  with pytest.raises(DataError, match=r"vid_b/00015\.jpg: frame listed in"):
    youtube_vos.YouTubeVOSDataset(root, "valid").load("vid_b")


def test_mask_size_mismatch(root):
  io.write_mask_png(root / "train/Annotations/vid_a/00020.png",
                    np.ones((4, 4), np.uint8))
  with pytest.raises(DataError, match=r"vid_a/00020\.png: mask is 4x4"):
    youtube_vos.YouTubeVOSDataset(root, "train").load("vid_a")


def test_corrupt_meta(root):
  (root / "valid/meta.json").write_text("{not json")
  with pytest.raises(DataError, match=r"valid/meta\.json: not valid JSON"):
    youtube_vos.YouTubeVOSDataset(root, "valid")


def test_requested_frames_is_union_of_object_frames():
  meta = {"videos": {"v": {"objects": {"1": {"frames": ["00010", "00015"]},
                                       "2": {"frames": ["00005", "00010"]}}}}}
  assert youtube_vos.requested_frames(meta) == {
      "v": ["00005", "00010", "00015"]}
