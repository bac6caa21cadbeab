"""chunked_vmap: the same result as one call, for any chunk size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metavos.runtime import chunking


@pytest.mark.parametrize("chunk", [0, 1, 2, 3, 7, 100])
def test_chunks_give_the_one_call_result(chunk):
  calls = []

  def batched(tree, scale):
    calls.append(scale.shape[0])
    return {"sum": tree["a"].sum(axis=1) * scale, "b": tree["b"] + 1}, scale

  rng = np.random.default_rng(0)
  tree = {"a": jnp.asarray(rng.random((7, 3))), "b": jnp.arange(7)}
  scale = jnp.asarray(rng.random(7))
  out = chunking.chunked_vmap(batched, chunk, tree, scale)
  calls_made = list(calls)
  calls.clear()
  want = batched(tree, scale)
  jax.tree.map(np.testing.assert_array_equal, out, want)
  sizes = [7] if chunk in (0, 7, 100) else (
      [chunk] * (7 // chunk) + ([7 % chunk] if 7 % chunk else []))
  assert calls_made == sizes
