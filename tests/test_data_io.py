"""Tests for metavos.data.io: palette, mask round trips, bad files."""

import io as pyio

import numpy as np
import pytest
from PIL import Image

from metavos.data import io
from metavos.data.errors import DataError


def _jpeg_bytes(height=16, width=24) -> bytes:
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8))
  buffer = pyio.BytesIO()
  image.save(buffer, format="JPEG", quality=90)
  return buffer.getvalue()


def test_palette_known_values():
  palette = io.davis_palette()
  assert palette.shape == (256, 3) and palette.dtype == np.uint8
  expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0),
              4: (0, 0, 128), 5: (128, 0, 128), 6: (0, 128, 128),
              7: (128, 128, 128), 8: (64, 0, 0), 9: (192, 0, 0),
              255: (224, 224, 192)}
  for index, colour in expected.items():
    assert tuple(palette[index]) == colour, index
  assert len({tuple(c) for c in palette}) == 256  # Every id distinguishable.


def test_mask_round_trip_is_palette_png(tmp_path):
  rng = np.random.default_rng(1)
  mask = rng.integers(0, 5, (20, 30)).astype(np.uint8)
  mask[0, :4] = 255  # Void must survive.
  path = tmp_path / "sub" / "00000.png"
  io.write_mask_png(path, mask)
  np.testing.assert_array_equal(io.read_mask(path), mask)
  with Image.open(path) as image:
    assert image.mode == "P"
    np.testing.assert_array_equal(
        np.array(image.getpalette()[:768], np.uint8).reshape(256, 3),
        io.davis_palette())
  assert [p.name for p in path.parent.iterdir()] == ["00000.png"]


def test_read_mask_l_keeps_stored_values(tmp_path):
  binary = np.zeros((8, 8), np.uint8)
  binary[2:5, 3:6] = 255
  Image.fromarray(binary).save(tmp_path / "l.png")
  mask, mode = io.read_mask_and_mode(tmp_path / "l.png")
  assert mode == "L"
  np.testing.assert_array_equal(mask, binary)  # 255 stays 255, not 1.


def test_read_image_converts_to_rgb(tmp_path):
  rgba = np.zeros((6, 7, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 200, 10
  Image.fromarray(rgba).save(tmp_path / "rgba.png")
  Image.fromarray(np.full((6, 7), 77, np.uint8)).save(tmp_path / "g.png")
  rgb = io.read_image(tmp_path / "rgba.png")
  assert rgb.shape == (6, 7, 3) and rgb.dtype == np.uint8
  assert (rgb[..., 0] == 200).all() and (rgb[..., 1:] == 0).all()
  np.testing.assert_array_equal(io.read_image(tmp_path / "g.png"),
                                np.full((6, 7, 3), 77, np.uint8))


@pytest.mark.parametrize("reader", [io.read_image, io.read_mask])
def test_missing_file_names_it(tmp_path, reader):
  path = tmp_path / "nope.png"
  with pytest.raises(DataError, match="nope.png: .*not found"):
    reader(path)


def test_truncated_jpeg_names_file(tmp_path):
  path = tmp_path / "00003.jpg"
  data = _jpeg_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(DataError, match=r"00003\.jpg: corrupt or truncated"):
    io.read_image(path)


def test_truncated_png_names_file(tmp_path):
  path = tmp_path / "00001.png"
  io.write_mask_png(path, np.ones((40, 40), np.uint8))
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(DataError, match=r"00001\.png: corrupt or truncated"):
    io.read_mask(path)


def test_rgb_mask_is_rejected(tmp_path):
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
  with pytest.raises(DataError, match="rgb.png: .*mode 'RGB'"):
    io.read_mask(tmp_path / "rgb.png")


@pytest.mark.parametrize("bad", [
    np.zeros((4, 4), np.int32), np.zeros((4, 4), bool),
    np.zeros((4, 4, 1), np.uint8)])
def test_write_mask_rejects_wrong_dtype_or_shape(tmp_path, bad):
  path = tmp_path / "out.png"
  with pytest.raises(DataError, match="out.png: .*uint8"):
    io.write_mask_png(path, bad)
  assert list(tmp_path.iterdir()) == []  # Nothing, not even a temp file.
