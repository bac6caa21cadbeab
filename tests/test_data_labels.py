"""Label sets: JSON round trip, validation errors, builders, fraction."""

import json

import numpy as np
import pytest

from metavos.data import labels
from metavos.data.errors import DataError
from metavos.data.sampling import TrainVideo


def _videos():
  ann = np.ones(10, bool)
  ann[5] = False  # frame 5 of "a" has no mask
  empty = np.zeros((10, 2, 2), np.uint8)
  return [TrainVideo("a", empty[..., None], empty, ann, (1,)),
          TrainVideo("b", empty[..., None], empty, np.ones(10, bool), (1,))]


def test_round_trip_is_exact_and_sorted(tmp_path):
  path = tmp_path / "labels.json"
  labels.save(path, {"b": [7, 0], "a": [3]})
  assert labels.load(path, _videos()) == {"a": [3], "b": [0, 7]}
  assert list(json.loads(path.read_text())) == ["a", "b"]


@pytest.mark.parametrize("content,match", [
    ({"c": [0]}, "sequence 'c' is not a training sequence"),
    ({"a": [10]}, "frame 10 is out of range"),
    ({"a": [-1]}, "frame -1 is out of range"),
    ({"a": [5]}, "frame 5 has no ground-truth mask"),
    ({"a": "0"}, "not a list of integers"),
    ([0, 1], "not an object"),
])
def test_each_validation_error_names_file_problem_and_fix(tmp_path, content,
                                                          match):
  path = tmp_path / "hand.json"
  path.write_text(json.dumps(content))
  with pytest.raises(DataError, match=match) as err:
    labels.load(path, _videos())
  assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text("{'a': [0]}")
  with pytest.raises(DataError, match="not valid JSON"):
    labels.load(bad, _videos())
  with pytest.raises(DataError, match="does not exist"):
    labels.load(tmp_path / "nope.json", _videos())


def test_builders_and_labelled_fraction():
  v = _videos()
  full = labels.all_frames_label_set(v)
  assert 5 not in full["a"] and len(full["b"]) == 10
  assert labels.labelled_fraction(full, v) == 1.0
  first = labels.first_frame_label_set(v)
  assert first == {"a": [0], "b": [0]}
  assert labels.labelled_fraction(first, v) == pytest.approx(2 / 19)
  r = labels.random_label_set(v, 3, seed=4)
  assert r == labels.random_label_set(v, 3, seed=4)  # deterministic
  assert r["b"] == labels.random_label_set(v[1:], 3, seed=4)["b"]
  assert all(len(f) == 3 for f in r.values()) and 5 not in r["a"]
  assert labels.random_label_set(v, 3, seed=5) != r
  labels.validate(r, v)


def test_record_writes_the_set_and_returns_the_fraction(tmp_path):
  v = _videos()
  frac = labels.record(str(tmp_path), {"a": [0, 1]}, v)
  assert frac == pytest.approx(2 / 19)
  assert labels.load(tmp_path / "labels.json", v) == {"a": [0, 1]}
