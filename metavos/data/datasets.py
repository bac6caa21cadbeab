"""The one factory every method uses to open a dataset.

Every dataset it returns offers the same interface: `.sequences` (names),
`len()`, iteration over `Video`s, and `.load(name) -> Video`, decoding one
sequence at a time.
"""

from __future__ import annotations

from metavos.data import davis, youtube_vos

KINDS = ("davis", "youtube_vos", "tfds")


def get_dataset(kind: str, root, *, year: int = 2017, split: str = "train",
                resolution: str = "480p", whole_split: bool = False):
  """Opens a dataset by kind.

  Args:
    kind: "davis" (any DAVIS-layout folder, e.g. synthetic data),
      "youtube_vos", or "tfds" (a folder written by `tfds_builder.build`;
      returns this JAX process's block of the split only).
    root: dataset root (for "tfds", the `out_dir` given to `build`).
    year: DAVIS year, 2016 or 2017 (unused by "youtube_vos"; checked
      against the built dataset for "tfds").
    split: split name.
    resolution: DAVIS resolution folder (unused by "youtube_vos"; checked
      against the built dataset for "tfds").
    whole_split: for "tfds", every sequence of the split on every process
      (evaluation lists them all, then shares them out itself); the other
      kinds always list the whole split.

  Returns:
    A `DavisDataset`, `YouTubeVOSDataset` or `tfds_builder.TfdsVideos`.

  Raises:
    ValueError: unknown `kind`.
    DataError: bad input data (see each reader).
  """
  if kind == "davis":
    return davis.DavisDataset(root, year, split, resolution)
  if kind == "youtube_vos":
    return youtube_vos.YouTubeVOSDataset(root, split)
  if kind == "tfds":
    # Imported here: TFDS takes a while to import and only this kind needs it.
    from metavos.data import tfds_builder  # pylint: disable=g-import-not-at-top
    return tfds_builder.load_split(
        root, split, *((0, 1) if whole_split else ()), year=year,
        resolution=resolution)
  raise ValueError(f"unknown dataset kind {kind!r}; choose one of {KINDS}")
