"""One-shot forward-backward chain: only the labelled mask is read, gradients
reach the forward steps, every variant trains, rolled == unrolled; static
clips."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _toy_memory import tiny_stcn
from metavos.finetune import augment
from metavos.memory import forward_backward as fb
from metavos.memory import static_clips
from metavos.methods import oneshot

# Forward frames of the rolled/unrolled test (scans of length 2, so the two
# differ); the gradient tests use T = 2 to keep compile time low.
T = 3


pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def setup(fast_compile):
  del fast_compile
  fns, params = tiny_stcn()
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.random((T + 1, 32, 32, 3)), jnp.float32)
  masks = np.zeros((2, 32, 32), np.float32)
  masks[0, 4:14, 2:12] = 1
  masks[1, 18:28, 20:30] = 1
  return fns, params, frames, jnp.asarray(masks)


@functools.lru_cache(maxsize=None, typed=True)  # unroll=True is not 1
def _grad_fn(fns, variant, unroll):
  """Jitted loss and gradients w.r.t. (params, labelled masks) of a batch,
  through the trainer's own `clip_loss`."""
  def loss(params, first_masks, batch, key):
    masks = batch["masks"].at[:, 0].set(first_masks)
    return oneshot.clip_loss(params, {**batch, "masks": masks}, 1.0, key,
                             fns=fns, variant=variant, unroll=unroll,
                             remat=False)
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _batch(frames, masks):
  n = frames.shape[0]
  return {"frames": frames[None],
          "masks": jnp.zeros((1, n) + masks.shape).at[:, 0].set(masks),
          "valid": jnp.ones((1, n) + masks.shape[1:], bool),
          "present": jnp.ones((1, masks.shape[0]), bool)}


def _grads(setup, variant, unroll=1, batch=None, key=0):
  fns, params, frames, masks = setup
  if batch is None:
    batch = _batch(frames[:3], masks)
  return _grad_fn(fns, variant, unroll)(params, batch["masks"][:, 0], batch,
                                        jax.random.key(key))


def test_backward_frames_per_variant():
  frames = jnp.arange(4, dtype=jnp.float32)[:, None]  # frame t holds t; T=3
  np.testing.assert_array_equal(fb.backward_frames(frames, "t_step")[:, 0],
                                [2, 1, 0])
  np.testing.assert_array_equal(fb.backward_frames(frames, "one_step")[:, 0],
                                [0])
  picks = {tuple(np.asarray(fb.backward_frames(
      frames, "two_step", jax.random.key(k))[:, 0])) for k in range(20)}
  assert picks == {(1.0, 0.0), (2.0, 0.0)}  # every intermediate, never 0 or T
  with pytest.raises(ValueError, match="num_forward >= 2"):
    fb.check_variant("two_step", 1)
  with pytest.raises(ValueError, match="must be one of"):
    fb.check_variant("three_step", 3)


# 1-step (the default) trains end to end in test_oneshot_end_to_end and
# test_memory_methods_xmem; its forward leg, which carries the labelled
# masks' gradient, is the one these two share.
@pytest.mark.parametrize("variant", ["t_step", "two_step"])
def test_each_variant_trains_through_the_forward_steps(setup, variant):
  loss, (g_params, g_masks) = _grads(setup, variant)
  assert np.isfinite(float(loss)) and float(loss) > 0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(g_params))
  for early in (g_params["key_encoder"]["conv1"]["kernel"],
                g_params["mask_stem"]["kernel"]):
    assert float(jnp.abs(early).max()) > 0
  # The labelled masks reach the loss only through the forward leg (frame
  # 0's memory value -> frames 1..T -> the backward leg's memory; as the
  # target they are an argmax): a gradient there went through every step.
  assert np.all(np.isfinite(g_masks)) and float(jnp.abs(g_masks).max()) > 0


def test_unrolled_equals_rolled(setup):
  # Forward values only: rolled/unrolled gradient parity of each leg is
  # tested on run_chain (test_memory_chain.py), and a gradient program here
  # would double this file's compile time.
  fns, params, frames, masks = setup

  def run(unroll):
    fwd, bwd = fb.forward_backward(fns, params, frames, masks,
                                   variant="t_step", unroll=unroll)
    return fwd.logits, bwd.logits

  rolled = jax.jit(functools.partial(run, 1))()
  unrolled = jax.jit(functools.partial(run, True))()
  assert rolled[1].shape[0] == T  # frames T-1, ..., 1, 0
  for a, b in zip(unrolled, rolled):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_unlabelled_masks_are_never_read(setup):
  _, _, frames, masks = setup
  batch = _batch(frames[:3], masks)
  loss, (g, _) = _grads(setup, "two_step", batch=batch, key=3)
  rng = np.random.default_rng(1)
  garbage = {**batch,
             "masks": batch["masks"].at[:, 1:].set(jnp.nan),
             "valid": batch["valid"].at[:, 1:].set(
                 jnp.asarray(rng.random((1, 2, 32, 32)) < 0.5))}
  loss2, (g2, _) = _grads(setup, "two_step", batch=garbage, key=3)
  assert float(loss2) == float(loss)
  for x, y in zip(jax.tree.leaves(g2), jax.tree.leaves(g)):
    np.testing.assert_array_equal(x, y)
  # The labelled frame's mask is read: moving it changes the loss. (Swapping
  # the two objects would not: the network is equivariant to their order.)
  moved = {**batch, "masks": batch["masks"].at[:, 0].set(masks[:, ::-1])}
  loss3, _ = _grads(setup, "two_step", batch=moved, key=3)
  assert abs(float(loss3) - float(loss)) > 1e-3


def test_static_clips_keep_frame_zero_and_move_the_rest(setup):
  frame = setup[2][0, :16, :16]
  clip = jax.jit(static_clips.static_clip, static_argnums=(2, 3))
  out = clip(jax.random.key(0), frame, 3, static_clips.StaticClipConfig())
  assert out.shape == (3, 16, 16, 3)
  np.testing.assert_array_equal(out[0], frame)
  assert float(jnp.abs(out[1] - out[0]).mean()) > 1e-2
  assert float(jnp.abs(out[2] - out[1]).mean()) > 1e-2
  assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
  # With every transform off the synthesised frames are the frame itself.
  off = static_clips.StaticClipConfig(augment.AugmentConfig(False, (1., 1.),
                                                            0.0), 0., 0., 0.)
  np.testing.assert_allclose(clip(jax.random.key(0), frame, 3, off),
                             jnp.stack([frame] * 3), atol=1e-6)
