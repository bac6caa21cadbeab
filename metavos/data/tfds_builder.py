"""DAVIS-layout folders as TFDS array_record datasets, read without TensorFlow.

Why this path: TFDS 4.9 runs `GeneratorBasedBuilder.download_and_prepare`
without TensorFlow when `file_format="array_record"`, and reads the result
through `builder.as_data_source()` (an `ArrayRecordDataSource` with random
access), also without TensorFlow. What needs TensorFlow is encoding with
`tfds.features.Image` (it calls `tf.image.encode_*`), so frames and masks are
stored as `Tensor(shape=(), dtype=object)` byte strings: the original JPEG and
PNG files, byte for byte. Decoding them with the readers `DavisDataset` uses
(`davis.davis_video`) therefore gives exactly the same `Video`. Reading goes
through `tfds.builder_from_directory`, so it needs neither `data_root` nor
this builder's constructor arguments.

Features of one example (one sequence):
  name: sequence name.
  frame_names: frame stems ("00000", ...).
  frames: the JPEG file of each frame.
  masks: the PNG file of each frame, b"" for frames without an annotation.

Records are written unshuffled in split-file order, and the sequence names of
each split are kept in the dataset metadata, so index i of a split is its
i-th sequence. `load_split` gives each JAX process a contiguous block of
indices (process p of P: [p*N//P, (p+1)*N//P)), so the processes together
cover every sequence exactly once; with fewer sequences than processes some
blocks are empty.

Build on one process (e.g. process 0) and read on all: TFDS writes to a
temporary folder and renames it, so readers never see a half-built dataset.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from metavos.data import davis, io
from metavos.data.errors import DataError
from metavos.data.types import Video

NAME = "metavos_davis"
DATASET_VERSION = "1.0.0"


class MetavosDavis(tfds.core.GeneratorBasedBuilder):
  """Converts one DAVIS-layout folder (real or synthetic) to array_record."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: "Original JPEG and PNG bytes per sequence."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> None:
    # No checksums file to find next to this module. The inherited property
    # touches `importlib_resources`, which TFDS 4.9.10 only declares for
    # Python < 3.9 (tensorflow/datasets#11212), so skipping it keeps the
    # build working without that package.
    return None

  def __init__(self, *, data_root, year: int = 2017, resolution: str = "480p",
               splits: Sequence[str] = ("train", "val"),
               allow_new_objects: bool = False, **kwargs):
    """Lists the splits' sequences (decoding happens in download_and_prepare).

    Args:
      data_root: DAVIS-layout folder.
      year: 2016 or 2017 (split files and mask convention).
      resolution: resolution folder.
      splits: split names to convert.
      allow_new_objects: see `DavisDataset`.
      **kwargs: `tfds.core.GeneratorBasedBuilder` arguments (data_dir, ...).
    """
    self._datasets = {
        s: davis.DavisDataset(data_root, year, s, resolution,
                              allow_new_objects=allow_new_objects)
        for s in splits}
    # Stored as dataset metadata; `build` compares it with what is on disk.
    self.build_settings = settings(
        data_root, year, resolution, allow_new_objects,
        {s: d.sequences for s, d in self._datasets.items()})
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    blobs = tfds.features.Sequence(
        tfds.features.Tensor(shape=(), dtype=np.object_))
    return tfds.core.DatasetInfo(
        builder=self,
        description="DAVIS-layout video sequences, original encoded files.",
        features=tfds.features.FeaturesDict({
            "name": tfds.features.Text(),
            "frame_names": tfds.features.Sequence(tfds.features.Text()),
            "frames": blobs,
            "masks": blobs,
        }),
        disable_shuffling=True,  # Index i is the i-th sequence of the split.
        metadata=tfds.core.MetadataDict(self.build_settings))

  def _split_generators(self, dl_manager):
    del dl_manager  # Local data: nothing to download.
    return {s: self._generate_examples(s) for s in self._datasets}

  def _generate_examples(self, split: str):
    dataset = self._datasets[split]
    for name in dataset.sequences:
      dataset.load(name)  # Validates; bad data never reaches the records.
      frames = dataset.frame_files(name)
      yield name, {
          "name": name,
          "frame_names": [f.name for f in frames],
          "frames": [pathlib.Path(f.image).read_bytes() for f in frames],
          "masks": [pathlib.Path(f.mask).read_bytes() if f.mask else b""
                    for f in frames],
      }


def settings(data_root, year: int, resolution: str, allow_new_objects: bool,
             sequences: dict[str, list[str]]) -> dict:
  """The metadata stored with a built dataset (JSON-serialisable)."""
  return {"data_root": str(pathlib.Path(data_root).resolve()), "year": year,
          "resolution": resolution, "allow_new_objects": allow_new_objects,
          "sequences": {s: list(n) for s, n in sequences.items()}}


def dataset_dir(out_dir) -> pathlib.Path:
  """Where `build(..., out_dir, ...)` puts the prepared dataset."""
  return pathlib.Path(out_dir) / NAME / DATASET_VERSION


def build(data_root, out_dir, year: int = 2017, resolution: str = "480p",
          splits: Sequence[str] = ("train", "val"), *,
          allow_new_objects: bool = False) -> pathlib.Path:
  """Converts a DAVIS-layout folder to array_record files (once).

  Args:
    data_root: DAVIS-layout folder (real or `synthetic.generate` output).
    out_dir: TFDS data_dir to write; one dataset per out_dir.
    year: 2016 or 2017.
    resolution: resolution folder.
    splits: split names to convert.
    allow_new_objects: see `DavisDataset`.

  Returns:
    The prepared dataset folder (`dataset_dir(out_dir)`).

  Raises:
    DataError: bad input data, or `out_dir` already holds a dataset built
      with other settings.
    ValueError: a split is named "all" (reserved by TFDS).
  """
  if "all" in (s.lower() for s in splits):
    raise ValueError('TFDS reserves the split name "all"; rename that split '
                     "file")
  builder = MetavosDavis(
      data_root=data_root, year=year, resolution=resolution, splits=splits,
      allow_new_objects=allow_new_objects, data_dir=str(out_dir),
      file_format="array_record")
  done = dataset_dir(out_dir)
  if (done / "dataset_info.json").exists():
    _, stored = _open(done)
    if stored != builder.build_settings:
      raise DataError(done, f"already holds a dataset built with {stored}, "
                      f"not {builder.build_settings}",
                      "delete this folder or pass another out_dir")
    return done
  builder.download_and_prepare()
  return done


def _open(directory: pathlib.Path) -> tuple[tfds.core.DatasetBuilder, dict]:
  """A read-only builder (no constructor arguments needed) and its metadata."""
  builder = tfds.builder_from_directory(str(directory))
  # Round trip through JSON so lists and tuples compare as stored.
  return builder, json.loads(json.dumps(dict(builder.info.metadata)))


def shard_indices(num: int, process_index: int, process_count: int) -> range:
  """Contiguous block of `range(num)` for one process (see module docstring)."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in "
                     f"[0, {process_count})")
  return range(process_index * num // process_count,
               (process_index + 1) * num // process_count)


class TfdsVideos:
  """One process's block of a built split; decodes a sequence on access.

  Attributes:
    split: split name.
    year, resolution: settings the dataset was built with.
    sequences: names of this process's sequences, in split order.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str,
               metadata: dict, indices: range):
    self._directory = builder.data_dir
    self._source = builder.as_data_source(split=split)
    self._indices = indices
    self._last = None  # (position, _files(position)) of the last record read
    self._allow_new_objects = metadata["allow_new_objects"]
    self.split, self.year = split, metadata["year"]
    self.resolution = metadata["resolution"]
    self.sequences = [metadata["sequences"][split][i] for i in indices]

  def __len__(self) -> int:
    return len(self._indices)

  def __iter__(self) -> Iterator[Video]:
    for i in range(len(self)):
      yield self[i]

  def __getitem__(self, i: int) -> Video:
    return self._video(i, headers_only=False)

  def _video(self, i: int, headers_only: bool) -> Video:
    frames, blobs = self._files(i)
    check = lambda k: io.check_image_bytes(blobs[k], k)
    decode = lambda k: io.decode_image(blobs[k], k)
    return davis.davis_video(
        self.sequences[i], frames, year=self.year,
        allow_new_objects=self._allow_new_objects,
        read_image=check if headers_only else decode,
        read_mask=lambda k: io.decode_mask_and_mode(blobs[k], k))

  def _files(self, i: int) -> tuple[list[davis.FrameFiles], dict]:
    """The i-th sequence's frames (keys name the record) and their bytes.
    The last record read is kept: indexing a sequence asks for its frames
    right after loading it."""
    if self._last is not None and self._last[0] == i:
      return self._last[1]
    self._last = (i, self._read_files(i))
    return self._last[1]

  def _read_files(self, i: int) -> tuple[list[davis.FrameFiles], dict]:
    index = self._indices[i]
    example = self._source[index]
    name = _text(example["name"])
    source = record_key(self._directory, self.split, index)
    if name != self.sequences[i]:
      raise DataError(source, f"record holds {name!r}, metadata says "
                      f"{self.sequences[i]!r}", "rebuild the dataset")
    return _frames_of(example, source)

  def _position(self, name: str) -> int:
    if name not in self.sequences:
      raise KeyError(f"{name!r} is not among this process's sequences of "
                     f"split {self.split!r}: {self.sequences}")
    return self.sequences.index(name)

  def load(self, name: str, headers_only: bool = False) -> Video:
    """Decodes the sequence `name` (one of this process's `sequences`);
    `headers_only`: see `davis.DavisDataset.load`."""
    return self._video(self._position(name), headers_only)

  def frame_files(self, name: str) -> list[davis.FrameFiles]:
    """The sequence's frames, keyed for `frame_reader`."""
    return self._files(self._position(name))[0]

  def frame_reader(self) -> "RecordReader":
    """Reads single frames and masks from the records (`RecordReader`)."""
    return RecordReader(str(self._directory), self.split, self.year)


def record_key(directory, split: str, index: int) -> str:
  """How frames of record `index` are named: `<dir>[<split>][<index>]`."""
  return f"{directory}[{split}][{index}]"


def _frames_of(example, source: str) -> tuple[list[davis.FrameFiles], dict]:
  name = _text(example["name"])
  blobs, frames = {}, []
  for stem, image, mask in zip(example["frame_names"], example["frames"],
                               example["masks"]):
    stem = _text(stem)
    key = f"{source}/{name}/{stem}"
    blobs[f"{key}.jpg"], blobs[f"{key}.png"] = image, mask
    frames.append(davis.FrameFiles(stem, f"{key}.jpg",
                                   f"{key}.png" if mask else None))
  return frames, blobs


class RecordReader:
  """Single frames and masks of a built split, by the keys of
  `TfdsVideos.frame_files` (the training pipeline's random access).

  A key names its record (`record_key`); the last records read are kept, so
  the frames of one clip or task cost one record read. Picklable: a loader
  worker process reopens the data source.
  """

  _KEEP = 4  # records kept per reader

  def __init__(self, directory: str, split: str, year: int):
    self.directory, self.split, self.year = directory, split, year
    self._source, self._recent = None, {}

  def __getstate__(self):
    return {"directory": self.directory, "split": self.split,
            "year": self.year}

  def __setstate__(self, state):
    self.__init__(**state)

  def _blob(self, key: str) -> bytes:
    record = key.rsplit("/", 2)[0]
    index = int(record[record.rindex("[") + 1:-1])
    blobs = self._recent.get(index)
    if blobs is None:
      if self._source is None:
        self._source = tfds.builder_from_directory(
            self.directory).as_data_source(split=self.split)
      blobs = _frames_of(self._source[index], record)[1]
      if len(self._recent) >= self._KEEP:
        self._recent.pop(next(iter(self._recent)), None)
      self._recent[index] = blobs
    return blobs[key]

  def image(self, key: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame."""
    return io.decode_image(self._blob(key), key)

  def mask(self, key: str) -> np.ndarray:
    """(H, W) uint8 object ids (`davis.mask_to_ids`)."""
    return davis.mask_to_ids(*io.decode_mask_and_mode(self._blob(key), key),
                             self.year, key)


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_split(out_dir, split: str, process_index: int | None = None,
               process_count: int | None = None, *, year: int | None = None,
               resolution: str | None = None) -> TfdsVideos:
  """Opens this process's block of a split built by `build`.

  Args:
    out_dir: the `out_dir` given to `build`.
    split: split name.
    process_index: defaults to `jax.process_index()`.
    process_count: defaults to `jax.process_count()`.
    year: if given, must equal the year the dataset was built with.
    resolution: if given, must equal the built resolution.

  Returns:
    The sequences of this process (contiguous block, see module docstring).

  Raises:
    DataError: no built dataset, unknown split, or mismatching year or
      resolution.
  """
  directory = dataset_dir(out_dir)
  if not (directory / "dataset_info.json").exists():
    raise DataError(directory, "no built metavos TFDS dataset",
                    "run metavos.data.tfds_builder.build(data_root, out_dir, "
                    "...) first")
  builder, metadata = _open(directory)
  if split not in metadata["sequences"]:
    raise DataError(directory, f"no split {split!r}",
                    f"use one of {sorted(metadata['sequences'])} or rebuild "
                    "with this split")
  for key, wanted in (("year", year), ("resolution", resolution)):
    if wanted is not None and wanted != metadata[key]:
      raise DataError(directory, f"built with {key}={metadata[key]!r}, "
                      f"asked for {wanted!r}", f"pass {key}={metadata[key]!r} "
                      "or build another out_dir")
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  # Only when needed.
    if process_index is None:
      process_index = jax.process_index()
    if process_count is None:
      process_count = jax.process_count()
  indices = shard_indices(len(metadata["sequences"][split]), process_index,
                          process_count)
  return TfdsVideos(builder, split, metadata, indices)
