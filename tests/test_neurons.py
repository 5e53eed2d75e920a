"""Scanned neurons: equal to a Python loop, hand-computed sequences, resets, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import neurons as N
from snnjax import surrogates as S


def _python_loop_lif(x_seq, **kwargs):
  v = jnp.zeros_like(x_seq[0]) + kwargs.get("v_reset", 0.0)
  spikes = []
  for x in x_seq:
    v, s = N.lif_step(v, x, **kwargs)
    spikes.append(s)
  return jnp.stack(spikes), v


LIF_SETTINGS = [
    dict(tau=2.0, decay_input=False, reset="hard"),
    dict(tau=1.7, decay_input=True, reset="hard", v_reset=-0.2),
    dict(tau=3.0, decay_input=False, reset="soft"),
    dict(tau=2.0, decay_input=True, reset="soft", detach_reset=True),
]


@pytest.mark.parametrize("settings", LIF_SETTINGS)
def test_scan_equals_python_loop_values_and_gradients(settings):
  key_x, key_w = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (6, 3, 5)) + 0.7
  w = jax.random.normal(key_w, x.shape)
  kwargs = dict(settings, surrogate=S.sigmoid(4.0))
  s_scan, v_scan = N.lif(x, **kwargs)
  s_loop, v_loop = _python_loop_lif(x, **kwargs)
  np.testing.assert_array_equal(np.asarray(s_scan), np.asarray(s_loop))
  np.testing.assert_allclose(np.asarray(v_scan), np.asarray(v_loop), atol=1e-6)
  assert 0 < float(s_scan.mean()) < 1  # the test exercises both firing and silence

  loss_scan = lambda x: jnp.sum(w * N.lif(x, **kwargs)[0])
  loss_loop = lambda x: jnp.sum(w * _python_loop_lif(x, **kwargs)[0])
  np.testing.assert_allclose(np.asarray(jax.grad(loss_scan)(x)),
                             np.asarray(jax.grad(loss_loop)(x)), rtol=1e-5, atol=1e-6)


def test_hard_reset_hand_computed():
  # tau=2, decay_input=False: h = v/2 + x; hard reset to 0.
  x = jnp.asarray([0.6, 0.8, 0.2, 1.5, 0.0])
  spikes, v = N.lif(x, tau=2.0, trace=True)
  # h: 0.6 -> 0.3+0.8=1.1 (fire, v=0) -> 0.2 -> 0.1+1.5=1.6 (fire, v=0) -> 0.
  np.testing.assert_array_equal(np.asarray(spikes), [0, 1, 0, 1, 0])
  np.testing.assert_allclose(np.asarray(v), [0.6, 0.0, 0.2, 0.0, 0.0], atol=1e-7)


def test_soft_reset_hand_computed():
  # IF with soft reset: v <- v + x, subtract threshold 1 on a spike.
  x = jnp.asarray([0.7, 0.7, 0.7, 0.7])
  spikes, v = N.if_(x, reset="soft", trace=True)
  # v: 0.7 -> 1.4 (fire, 0.4) -> 1.1 (fire, 0.1) -> 0.8.
  np.testing.assert_array_equal(np.asarray(spikes), [0, 1, 1, 0])
  np.testing.assert_allclose(np.asarray(v), [0.7, 0.4, 0.1, 0.8], atol=1e-6)


def test_decay_input_hand_computed():
  # tau=4, decay_input=True: h = v + (x - v)/4.
  x = jnp.asarray([2.0, 2.0, 2.0])
  spikes, v = N.lif(x, tau=4.0, decay_input=True, trace=True)
  np.testing.assert_array_equal(np.asarray(spikes), [0, 0, 1])
  np.testing.assert_allclose(np.asarray(v), [0.5, 0.875, 0.0], atol=1e-7)


def test_final_membrane_is_last_trace_entry():
  x = jax.random.normal(jax.random.key(1), (5, 4))
  _, v_final = N.lif(x, tau=2.0)
  _, v_trace = N.lif(x, tau=2.0, trace=True)
  assert v_trace.shape == x.shape
  np.testing.assert_array_equal(np.asarray(v_final), np.asarray(v_trace[-1]))


def test_detach_reset_changes_gradients_not_values():
  x = jax.random.normal(jax.random.key(2), (8, 16)) + 0.8
  run = lambda detach: functools.partial(N.lif, tau=2.0, detach_reset=detach,
                                         surrogate=S.atan(2.0))
  s_attached, v_attached = run(False)(x)
  s_detached, v_detached = run(True)(x)
  np.testing.assert_array_equal(np.asarray(s_attached), np.asarray(s_detached))
  np.testing.assert_array_equal(np.asarray(v_attached), np.asarray(v_detached))
  g_attached = jax.grad(lambda x: jnp.sum(run(False)(x)[0]))(x)
  g_detached = jax.grad(lambda x: jnp.sum(run(True)(x)[0]))(x)
  assert float(jnp.max(jnp.abs(g_attached - g_detached))) > 1e-3


def test_plif_matches_lif_at_equal_tau_and_learns_tau():
  x = jax.random.normal(jax.random.key(3), (6, 2, 3)) + 0.5
  w = N.plif_w_from_tau(3.0)
  s_plif, v_plif = N.plif(x, w, decay_input=True)
  s_lif, v_lif = N.lif(x, tau=3.0, decay_input=True)
  np.testing.assert_array_equal(np.asarray(s_plif), np.asarray(s_lif))
  np.testing.assert_allclose(np.asarray(v_plif), np.asarray(v_lif), atol=1e-6)
  grad_w = jax.grad(lambda w: jnp.sum(N.plif(x, w)[0]))(jnp.asarray(w))
  assert np.isfinite(float(grad_w)) and float(grad_w) != 0.0


def test_if_has_no_leak():
  x = jnp.full((10, 1), 0.15)
  spikes, _ = N.if_(x)
  # 0.15 per step reaches 1.0 at step 7 (0-based index 6) exactly once within 10 steps.
  assert np.asarray(spikes)[:, 0].tolist() == [0] * 6 + [1] + [0] * 3


@pytest.mark.parametrize("shape", [(4,), (4, 3), (4, 2, 5, 5, 3)])
def test_any_trailing_shape_and_bfloat16(shape):
  x = jnp.ones(shape, jnp.bfloat16) * 0.6
  spikes, v = N.lif(x)
  assert spikes.shape == shape and spikes.dtype == jnp.bfloat16
  assert v.shape == shape[1:]


def test_jit_with_unroll_matches():
  x = jax.random.normal(jax.random.key(4), (4, 8)) + 0.6
  a = N.lif(x)[0]
  b = jax.jit(functools.partial(N.lif, unroll=True))(x)[0]
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match=r"T >= 1, got shape \(0, 3\)"):
    N.lif(jnp.zeros((0, 3)))
  with pytest.raises(ValueError, match=r"T >= 1, got shape \(\)"):
    N.if_(jnp.asarray(1.0))
  with pytest.raises(ValueError, match="tau >= 1.*tau=0.5"):
    N.lif(jnp.zeros((2, 3)), tau=0.5)
  with pytest.raises(ValueError, match="unknown reset 'sof'.*hard, soft"):
    N.lif(jnp.zeros((2, 3)), reset="sof")
  with pytest.raises(ValueError, match="unknown reset"):
    N.lif_step(jnp.zeros(3), jnp.zeros(3), reset="none")
  with pytest.raises(ValueError, match="tau > 1"):
    N.plif_w_from_tau(1.0)
