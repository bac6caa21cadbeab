"""Pictures: overlays, the Pillow line plot, and the HTML report (rendered)."""

import html.parser
import json
import os
import urllib.parse

import numpy as np
import pytest
from PIL import Image

import _smoke_run
from configs import eosvos as eosvos_config
from metavos.data import io
from metavos.data.davis import DavisDataset
from metavos.methods import eval_loop
from metavos.metrics import davis as davis_metrics
from metavos.visualize import overlay, plot


def test_overlay_blends_the_palette_colour_and_outlines_objects():
  frame = np.full((8, 10, 3), 100, np.uint8)
  mask = np.zeros((8, 10), np.uint8)
  mask[1:6, 1:5] = 1
  mask[1:6, 6:9] = 2
  out = overlay.overlay(frame, mask, alpha=0.5)
  palette = io.davis_palette().astype(float)
  np.testing.assert_array_equal(out[7, 0], [100, 100, 100])  # background
  np.testing.assert_array_equal(out[3, 2],
                                np.round(50 + 0.5 * palette[1]))  # inside 1
  np.testing.assert_array_equal(out[3, 7], np.round(50 + 0.5 * palette[2]))
  np.testing.assert_array_equal(out[3, 4], palette[1])  # outline of 1
  np.testing.assert_array_equal(out[5, 2], palette[1])


def test_pick_frames_and_fit_size():
  assert overlay.pick_frames(10, 4) == [0, 3, 6, 9]
  assert overlay.pick_frames(3, 40) == [0, 1, 2]
  assert overlay.fit_size(480, 854, 240) == (135, 240)
  assert overlay.fit_size(48, 64, 240) == (48, 64)  # never upscales


def test_gif_is_downscaled_subsampled_and_coloured(tmp_path):
  t, h, w = 10, 48, 64
  frames = np.full((t, h, w, 3), 200, np.uint8)
  masks = np.zeros((t, h, w), np.uint8)
  for i in range(t):  # object 1 moves right by 4 pixels a frame
    masks[i, 10:30, 4 * i:4 * i + 20] = 1
  path = tmp_path / "v.gif"
  kept = overlay.write_overlay_gif(path, frames, masks, max_frames=4,
                                   max_side=32, fps=5)
  assert kept == [0, 3, 6, 9]
  with Image.open(path) as gif:
    assert gif.size == (32, 24) and gif.n_frames == 4
    assert gif.info["duration"] == 200
    decoded = []
    for i in range(gif.n_frames):
      gif.seek(i)
      decoded.append(np.asarray(gif.convert("RGB"), np.int32))
  tint = np.round(100 + 0.5 * io.davis_palette()[1])
  for frame, t_idx in zip(decoded, kept):
    col = (4 * t_idx + 10) // 2  # the object's centre at half size
    assert np.abs(frame[10, col] - tint).max() <= 8, (t_idx, frame[10, col])
    assert np.abs(frame[22, col] - 200).max() <= 8  # below it: untouched


def test_line_plot_draws_values_where_its_axes_say():
  red, blue = (200, 0, 0), (0, 0, 200)
  values = np.array([np.nan, 0.2, 0.8, 0.8, np.nan, 0.5, np.nan])
  series = [plot.Series("object 1", values, red),
            plot.Series("object 2", np.full(7, 0.05), blue)]
  size = (300, 160)
  image = np.asarray(plot.line_plot(series, size=size, title="t"), np.int32)
  assert image.shape == (160, 300, 3)
  axes = plot.plot_axes(size, 7, [s.label for s in series])

  def colour_near(x, y, colour, radius=1):
    c, r = (int(round(v)) for v in axes.px(x, y))
    patch = image[r - radius:r + radius + 1, c - radius:c + radius + 1]
    return bool((np.abs(patch - colour).sum(-1) < 30).any())

  assert colour_near(1, 0.2, red) and colour_near(2, 0.8, red)
  assert colour_near(1.5, 0.5, red)  # on the segment between frames 1 and 2
  assert colour_near(5, 0.5, red)  # a value between two gaps is a dot
  assert not colour_near(3.5, 0.65, red, radius=2)  # the NaN gap
  assert not colour_near(0.5, 0.2, red, radius=2)
  assert colour_near(6, 0.05, blue)
  # Legend swatches sit right of the plot area, one per series.
  legend = image[:, axes.right + 2:]
  for colour in (red, blue):
    assert (np.abs(legend - colour).sum(-1) < 30).sum() >= 10


def test_nice_ticks():
  assert plot.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
  assert plot.nice_ticks(0, 37, 8) == [0, 5, 10, 15, 20, 25, 30, 35]


def test_per_frame_series_places_scored_frames():
  result = {1: {"J": np.array([0.5, 0.25]), "F": np.array([1.0, 0.0])}}
  series = davis_metrics.per_frame_series(result, 4, "J")
  np.testing.assert_array_equal(series[1], [np.nan, 0.5, 0.25, np.nan])
  with pytest.raises(ValueError, match="num_frames=5"):
    davis_metrics.per_frame_series(result, 5)


class _Page(html.parser.HTMLParser):
  """Collects links, images and the numeric cells of the metrics table."""

  def __init__(self):
    super().__init__()
    self.links, self.images, self.cells = [], [], []
    self._row, self._cell = None, None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "a":
      self.links.append(attrs["href"])
    elif tag == "img":
      self.images.append(attrs["src"])
    elif tag == "tr":
      self._row = attrs.get("data-key")
    elif tag == "td" and "data-metric" in attrs:
      self._cell = [self._row, attrs["data-metric"], attrs.get("data-value"),
                    ""]

  def handle_data(self, data):
    if self._cell is not None:
      self._cell[3] += data

  def handle_endtag(self, tag):
    if tag == "td" and self._cell is not None:
      self.cells.append(tuple(self._cell))
      self._cell = None


def _check_report(workdir, num_frames):
  """Renders report.html as a browser would read it; returns the page."""
  with open(os.path.join(workdir, "report.html"), encoding="utf-8") as f:
    page = _Page()
    page.feed(f.read())
  with open(os.path.join(workdir, "metrics.json")) as f:
    metrics = json.load(f)
  for ref in page.links + page.images:
    assert not urllib.parse.urlparse(ref).scheme and not ref.startswith("/")
    assert os.path.exists(os.path.join(workdir, urllib.parse.unquote(ref))), ref
  gifs = [s for s in page.images if s.endswith(".gif")]
  results = os.path.join(workdir, "results")  # sequence folders + provenance
  assert len(gifs) == sum(os.path.isdir(os.path.join(results, d))
                          for d in os.listdir(results))
  for src in page.images:
    with Image.open(os.path.join(workdir, urllib.parse.unquote(src))) as im:
      im.load()
      if src.endswith(".gif"):
        assert im.n_frames == num_frames
  # Every number of metrics.json is in the table, exactly, and shown rounded.
  shown = {(row, key): (value, text) for row, key, value, text in page.cells
           if value is not None}
  expected = {("global", k): v for k, v in metrics["global"].items()}
  for name, scores in metrics["per_object"].items():
    expected.update({(name, k): v for k, v in scores.items()})
  assert set(shown) == set(expected)
  for where, v in expected.items():
    value, text = shown[where]
    assert float(value) == v, where
    assert text == f"{v:.3f}", where
  for row, key, value, text in page.cells:  # per-object J&F, derived
    if value is None:
      s = metrics["per_object"][row]
      assert text == f"{(s['J-Mean'] + s['F-Mean']) / 2:.3f}"
  return page


def test_evaluate_split_writes_a_report_that_renders(tmp_path, synthetic_root):
  """The one evaluation loop with a known segmenter: odd frames exact, even
  frames empty, so J per frame is known."""
  config = eosvos_config.get_config("smoke")
  config.data.root = str(synthetic_root)
  config.data.split = "train"  # 2 videos
  config.eval.max_gif_frames = 4
  workdir = str(tmp_path / "w")
  calls = []

  def segment(video, rng):
    del rng
    pred = video.masks.copy()
    pred[::2] = 0
    calls.append(video.name)
    return pred, {"fps": 100.0, "seconds": 0.06}

  metrics = eval_loop.evaluate_split(config, workdir, segment)
  assert len(calls) == 2
  page = _check_report(workdir, num_frames=4)
  assert sum(s.endswith("_J.png") for s in page.images) == 2
  # Frames 1..4 are scored: 1 and 3 exact; in 2 and 4, J = 0 where the
  # object is present, 1 where it is absent from the ground truth too.
  ds = DavisDataset(synthetic_root, split="train")
  videos = [ds.load(n) for n in ds.sequences]
  expected = [np.mean([1.0 if t % 2 or not (v.masks[t] == o).any() else 0.0
                       for t in range(1, v.num_frames - 1)])
              for v in videos for o in v.object_ids]
  assert 0 < min(expected)
  assert metrics["global"]["J-Mean"] == pytest.approx(np.mean(expected))
  with open(os.path.join(workdir, "timing.json")) as f:
    timing = json.load(f)
  assert timing["median_fps"] == 100.0  # pictures do not change fps
  assert timing["pictures_seconds"] >= sum(
      v["pictures_seconds"] for v in timing["videos"].values()) > 0

  # The J plot shows J = 1 at frame 1 in the last object's colour.
  video = videos[0]
  with Image.open(os.path.join(workdir, "pictures",
                               f"{video.name}_J.png")) as im:
    image = np.asarray(im.convert("RGB"), np.int32)
  scores = metrics["per_object"]
  labels = [f"object {o} (J {scores[f'{video.name}_{o}']['J-Mean']:.3f})"
            for o in video.object_ids]
  axes = plot.plot_axes(tuple(config.eval.plot_size), video.num_frames,
                        labels)
  c, r = (int(round(v)) for v in axes.px(1, 1.0))
  colour = io.davis_palette()[video.object_ids[-1]]  # drawn last, on top
  patch = image[r - 1:r + 2, c - 1:c + 2]
  assert (np.abs(patch - colour).sum(-1) < 30).any()


def test_pictures_off_writes_none(tmp_path, synthetic_root):
  config = eosvos_config.get_config("smoke")
  config.data.root = str(synthetic_root)
  config.eval.pictures = False
  workdir = str(tmp_path / "w")
  eval_loop.evaluate_split(config, workdir,
                           lambda v, rng: (v.masks.copy(), {"fps": 1.0}))
  assert not os.path.exists(os.path.join(workdir, "report.html"))
  assert not os.path.exists(os.path.join(workdir, "pictures"))
  with open(os.path.join(workdir, "timing.json")) as f:
    assert "pictures_seconds" not in json.load(f)


def test_a_trained_run_has_a_report_that_renders():
  """The pictures of a real train-and-evaluate run (OSVOS smoke)."""
  workdir, metrics = _smoke_run.trained()
  page = _check_report(workdir, num_frames=6)
  results = os.path.join(workdir, "results")
  assert len([s for s in page.images if s.endswith("_J.png")]) == sum(
      os.path.isdir(os.path.join(results, d)) for d in os.listdir(results))
  with open(os.path.join(workdir, "timing.json")) as f:
    timing = json.load(f)
  assert timing["pictures_seconds"] > 0
  assert metrics  # the run scored its val videos


def test_closing_summary_names_the_report(tmp_path):
  from metavos import train  # pylint: disable=g-import-not-at-top
  (tmp_path / "report.html").write_text("<html></html>")
  (tmp_path / "pictures").mkdir()
  text = train.describe_outputs(str(tmp_path), {})
  assert "report.html" in text and "pictures" in text
  assert "metrics.json" not in text  # only what exists is listed
