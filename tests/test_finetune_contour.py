"""OSVOS' contour step: HED contours, superpixels along them, majority vote."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from metavos.finetune import contour

from _vgg_files import contour_head, random_convs, reference_stages, write_hed

pytestmark = pytest.mark.usefixtures("fast_compile")


def test_hed_matches_a_reference_written_with_lax(tmp_path):
  path = tmp_path / "hed.weights.h5"
  convs = random_convs()
  write_hed(path, convs)
  hed = contour.load_hed(str(path))
  images = jax.random.uniform(jax.random.key(0), (1, 21, 30, 3))
  head = contour_head()
  sides = []
  for i, x in enumerate(reference_stages(images, convs, "caffe_bgr")):
    kernel, bias = head[f"dsn{i + 1}"]
    side = lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
    sides.append(jax.image.resize(side, (1, 21, 30, 1), "bilinear"))
  kernel, bias = head["fuse"]
  want = jax.nn.sigmoid(jnp.concatenate(sides, -1) @ kernel[0, 0] + bias)
  np.testing.assert_allclose(hed(images), want[..., 0], atol=1e-5)


def test_plain_vgg_weights_have_no_contour_head(tmp_path):
  path = tmp_path / "vgg.weights.h5"
  write_hed(path, random_convs(), contour=False)
  with pytest.raises(Exception, match="dsn1"):
    contour.load_hed(str(path))


def test_superpixels_do_not_cross_a_contour():
  edges = np.zeros((20, 30), np.float32)
  edges[:, 11] = 1.0  # a vertical contour
  edges[5, :11] = 0.9  # and a horizontal one on its left
  labels = contour.superpixels(edges, cell=100, threshold=0.5)
  left, right = labels[:, :11], labels[:, 12:]
  assert not set(np.unique(left)) & set(np.unique(right))
  assert len(np.unique(right)) == 1
  assert len(np.unique(left)) == 2  # above and below the horizontal contour
  # The grid bounds a region's size even with no contour at all.
  assert len(np.unique(contour.superpixels(np.zeros((20, 30)), 10))) == 6


def test_snapping_moves_a_boundary_onto_the_contour():
  edges = np.zeros((20, 30), np.float32)
  edges[:, 15] = 1.0
  labels = contour.superpixels(edges, cell=100, threshold=0.5)
  coarse = np.zeros((20, 30), np.uint8)
  coarse[:, 18:] = 2  # object 2 on the right, boundary 3 px off
  snapped = contour.snap_to_superpixels(coarse, labels)
  assert (snapped[:, 16:] == 2).all() and (snapped[:, :15] == 0).all()
  # Majority wins per superpixel, whatever the ids.
  ids = np.array([[1, 1, 3], [0, 1, 3]], np.uint8)
  regions = np.array([[0, 0, 0], [0, 0, 1]])
  np.testing.assert_array_equal(contour.snap_to_superpixels(ids, regions),
                                [[1, 1, 1], [1, 1, 3]])
