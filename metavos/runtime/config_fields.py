"""One convention from a config block to a frozen dataclass.

Every settings dataclass (`FinetuneConfig`, `MetaConfig`, `PropagateConfig`,
`ClipAugmentConfig`, `StaticClipConfig`, `MaskRCNNSpec`) is made by
`from_block`: each field read by name from its block (no `.get`: a missing
field is an error, not a silent default), lists turned into tuples (config
files write tuples, command lines and JSON give lists), values the caller
derives (a resolved platform choice, a nested block) passed as keywords,
and every key of the block either a field or declared as read elsewhere —
so a key that nothing reads (a typo, a removed setting) fails, naming the
block.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, TypeVar

T = TypeVar("T")


def _plain(value: Any) -> Any:
  return tuple(value) if isinstance(value, list) else value


def from_block(cls: type[T], block, path: str, *,
               other_keys: Iterable[str] = (), **given: Any) -> T:
  """`cls(...)` from the config block `block` (at config path `path`).

  Args:
    cls: a dataclass.
    block: a ConfigDict (or mapping) holding the fields by name.
    path: the block's config path for messages, e.g. "config.finetune".
    other_keys: keys of `block` that are not fields: read by other code,
      or by the caller to derive a `given` value.
    **given: field values the caller derives; they win over the block's.

  Raises:
    ValueError: the block lacks a field, or holds a key nothing reads.
  """
  names = [f.name for f in dataclasses.fields(cls)]
  keys = set(block.keys())
  unknown = sorted(keys - set(names) - set(other_keys) - set(given))
  if unknown:
    raise ValueError(f"{path} has keys {unknown} that nothing reads "
                     f"({cls.__name__} fields: {names}); remove or rename "
                     "them.")
  missing = [n for n in names if n not in given and n not in keys]
  if missing:
    raise ValueError(f"{path} lacks {missing} ({cls.__name__}); add them "
                     "to the config (see configs/).")
  return cls(**{n: given[n] if n in given else _plain(block[n])
                for n in names})
