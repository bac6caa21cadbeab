"""Tests for metavos.data.tfds_builder: array_record round trip, sharding."""

import shutil
import sys

import numpy as np
import pytest

from metavos.data import datasets, davis, synthetic, tfds_builder
from metavos.data.errors import DataError


def assert_same_video(a, b):
  assert (a.name, a.frame_names, a.object_ids, a.first_frame) == (
      b.name, b.frame_names, b.object_ids, b.first_frame)
  for field in ("frames", "masks", "annotated"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.fixture(scope="module")
def built(synthetic_root, tmp_path_factory):
  out_dir = tmp_path_factory.mktemp("tfds")
  tfds_builder.build(synthetic_root, out_dir, splits=("train", "val"))
  return out_dir


@pytest.fixture(scope="module")
def five(tmp_path_factory):
  """5 one-frame sequences in one split, to shard."""
  root = synthetic.generate(
      tmp_path_factory.mktemp("five"), num_videos=5, num_frames=1, height=16,
      width=16, max_objects=1, splits={"every": 5})
  out_dir = tmp_path_factory.mktemp("five_tfds")
  tfds_builder.build(root, out_dir, splits=("every",))
  return out_dir


def test_writes_array_record_without_tensorflow(built):
  files = list(tfds_builder.dataset_dir(built).glob("*.array_record-*"))
  assert sorted(f.name.split(".")[0] for f in files) == [
      "metavos_davis-train", "metavos_davis-val"]
  assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("split", ["train", "val"])
def test_round_trip_equals_davis_reader(built, synthetic_root, split):
  reference = davis.DavisDataset(synthetic_root, split=split)
  records = tfds_builder.load_split(built, split, 0, 1)
  assert records.sequences == reference.sequences
  for name in reference.sequences:
    assert_same_video(records.load(name), reference.load(name))


def test_sharding_covers_every_sequence_once(five):
  everything = tfds_builder.load_split(five, "every", 0, 1).sequences
  assert len(everything) == 5
  for count in (1, 2, 3, 5, 7):
    shards = [tfds_builder.load_split(five, "every", p, count).sequences
              for p in range(count)]
    assert sum(shards, []) == everything  # Contiguous blocks, in order.
  shard = tfds_builder.load_split(five, "every", 1, 2)
  assert [v.name for v in shard] == everything[2:5]  # Decodes its own only.
  with pytest.raises(KeyError, match="synthetic-000"):
    shard.load("synthetic-000")


def test_default_process_is_jax_process(five):
  import jax  # pylint: disable=g-import-not-at-top
  records = tfds_builder.load_split(five, "every")
  expected = tfds_builder.shard_indices(5, jax.process_index(),
                                        jax.process_count())
  assert len(records) == len(expected)


def test_get_dataset_tfds_checks_settings(built):
  records = datasets.get_dataset("tfds", built, split="val")
  assert records.sequences == ["synthetic-002"]
  with pytest.raises(DataError, match="built with year=2017"):
    datasets.get_dataset("tfds", built, split="val", year=2016)
  with pytest.raises(DataError, match=r"no split 'test'.*\['train', 'val'\]"):
    tfds_builder.load_split(built, "test", 0, 1)


def test_missing_dataset_and_conflicting_rebuild(built, synthetic_root, tmp_path):
  with pytest.raises(DataError, match="no built metavos TFDS dataset"):
    tfds_builder.load_split(tmp_path, "train", 0, 1)
  assert tfds_builder.build(synthetic_root, built) == tfds_builder.dataset_dir(
      built)  # Same settings: reused.
  with pytest.raises(DataError, match="already holds a dataset"):
    tfds_builder.build(synthetic_root, built, splits=("train",))


def test_bad_source_data_is_not_built(synthetic_root, tmp_path):
  root = shutil.copytree(synthetic_root, tmp_path / "bad")
  path = root / "Annotations/480p/synthetic-002/00002.png"
  path.write_bytes(path.read_bytes()[:50])
  with pytest.raises(DataError, match=r"00002\.png: corrupt"):
    tfds_builder.build(root, tmp_path / "out", splits=("val",))
  assert not tfds_builder.dataset_dir(tmp_path / "out").exists()
