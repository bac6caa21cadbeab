"""Which frame to annotate next: rank unannotated frames by model uncertainty.

After fine-tuning on the frames annotated so far, every frame is segmented;
a frame whose per-object foreground probabilities sit near 0.5 is one the
model is unsure about, and annotating it adds the most new information.
The score of a frame is the mean binary entropy (in bits) of its per-object
probabilities, averaged over pixels and objects.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def frame_uncertainty(probs: np.ndarray, eps: float = 1e-6) -> np.ndarray:
  """Mean binary entropy per frame.

  Args:
    probs: (K, T, H, W) per-object foreground probabilities.
    eps: clipping that keeps log finite.

  Returns:
    (T,) scores in [0, 1]; 1 = every pixel at p = 0.5.
  """
  p = np.clip(probs.astype(np.float64), eps, 1.0 - eps)
  h = -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))
  return h.mean(axis=(2, 3)).mean(axis=0)


def rank_frames(scores: np.ndarray, annotated: Sequence[int],
                min_gap: int = 0) -> list[int]:
  """Unannotated frames, most uncertain first.

  Args:
    scores: (T,) uncertainty per frame.
    annotated: frames that already have masks (never suggested).
    min_gap: skip frames closer than this to an annotated frame, whose
      neighbours are nearly copies of it.

  Returns:
    Frame indices sorted by decreasing uncertainty (ties: earlier first).
  """
  annotated = np.asarray(sorted(annotated), int)
  order = np.argsort(-scores, kind="stable")
  out = []
  for t in order:
    if annotated.size and np.abs(annotated - t).min() <= min_gap:
      continue
    out.append(int(t))
  return out


def evenly_spaced(num_frames: int, num_annotated: int, first: int = 0
                  ) -> list[int]:
  """The paper's choice: `num_annotated` frames evenly spaced from `first`."""
  return [int(first + i * (num_frames - first) // num_annotated)
          for i in range(num_annotated)]
