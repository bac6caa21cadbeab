"""TensorBoard scalar event files, written without TensorFlow or tensorboard.

An event file is a TFRecord stream of serialised `tensorflow.Event` protos.
Scalars need only a handful of proto fields, so they are encoded by hand here
rather than pulling in TensorFlow (hundreds of MB) for a log file:

  record  = uint64 length | uint32 masked_crc32c(length) | data
            | uint32 masked_crc32c(data)              (all little-endian)
  Event   = wall_time (1, double) | step (2, int64) | file_version (3, string)
            | summary (5, Summary) | session_log (7, SessionLog)
  Summary = repeated value (1, Value)
  Value   = tag (1, string) | simple_value (2, float)
  SessionLog = status (1, enum; START = 1)
"""

from __future__ import annotations

import os
import pathlib
import socket
import struct
import time
from typing import Mapping

FILE_VERSION = "brain.Event:2"
_SESSION_START = 1

# Protobuf wire types.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _crc32c_table() -> tuple[int, ...]:
  poly = 0x82F63B78  # Castagnoli polynomial, bit-reversed.
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`, as TFRecord framing uses it.

  A byte-at-a-time table lookup: slow for bulk data, but records here are a
  few hundred bytes written once per logged step.
  """
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The masked CRC that TFRecord stores (the mask guards CRCs of CRCs)."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
  """Wraps one serialised proto in TFRecord framing."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


def _varint(value: int) -> bytes:
  if value < 0:  # int64 negatives are encoded as their 64-bit two's complement.
    value += 1 << 64
  out = bytearray()
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint((field << 3) | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
  return _key(field, _BYTES) + _varint(len(payload)) + payload


def encode_scalar_summary(scalars: Mapping[str, float]) -> bytes:
  """Serialises a `Summary` holding one `simple_value` per tag."""
  values = []
  for tag, value in scalars.items():
    value_msg = (_bytes_field(1, tag.encode("utf-8"))
                 + _key(2, _FIXED32) + struct.pack("<f", float(value)))
    values.append(_bytes_field(1, value_msg))
  return b"".join(values)


def encode_event(wall_time: float, step: int, *,
                 file_version: str | None = None,
                 summary: bytes | None = None,
                 session_start: bool = False) -> bytes:
  """Serialises an `Event` with the given optional payload."""
  parts = [_key(1, _FIXED64) + struct.pack("<d", wall_time),
           _key(2, _VARINT) + _varint(step)]
  if file_version is not None:
    parts.append(_bytes_field(3, file_version.encode("utf-8")))
  if summary is not None:
    parts.append(_bytes_field(5, summary))
  if session_start:
    parts.append(_bytes_field(7, _key(1, _VARINT) + _varint(_SESSION_START)))
  return b"".join(parts)


class EventFileWriter:
  """Appends scalar events to a new `events.out.tfevents.*` file in `logdir`.

  Each record is flushed as it is written, so TensorBoard (and a crash) sees
  whole records only, except possibly a torn last one, which readers skip.
  """

  def __init__(self, logdir: str | os.PathLike):
    self.logdir = pathlib.Path(logdir)
    self.logdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    # TensorBoard reads a directory's files in name order, so the timestamp
    # orders successive runs; host and pid keep concurrent processes apart. A
    # process reopening within the same second appends to its own file, which
    # keeps the order too.
    name = (f"events.out.tfevents.{int(now)}.{socket.gethostname()}."
            f"{os.getpid()}")
    self.path = self.logdir / name
    # An append-only log: atomic_open's write-then-rename cannot apply here.
    self._file = open(self.path, "ab")
    self._write(encode_event(now, 0, file_version=FILE_VERSION))

  def _write(self, event: bytes) -> None:
    self._file.write(frame_record(event))
    self._file.flush()

  def add_scalars(self, step: int, scalars: Mapping[str, float],
                  wall_time: float | None = None) -> None:
    """Writes one event holding all `scalars` at `step`."""
    wall_time = time.time() if wall_time is None else wall_time
    self._write(encode_event(wall_time, step,
                             summary=encode_scalar_summary(scalars)))

  def add_session_start(self, step: int,
                        wall_time: float | None = None) -> None:
    """Marks a (re)start at `step`.

    TensorBoard then discards events of earlier files with step >= `step`,
    which a resumed run is about to write again.
    """
    wall_time = time.time() if wall_time is None else wall_time
    self._write(encode_event(wall_time, step, session_start=True))

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()
