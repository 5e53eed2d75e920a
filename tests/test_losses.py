"""Losses: CE, accuracy, TET, SML against independent NumPy formulas; Lipschitz penalty vs SVD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import losses as L

B, C = 6, 5


# Independent NumPy statements of the formulas (docs/methods.md section 3, the TET paper).
def _np_log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_ce(z, y):
  return -np.mean(_np_log_softmax(z)[np.arange(len(y)), y])


def _np_kl(teacher, student, temp):
  pt = np.exp(_np_log_softmax(teacher / temp))
  return np.mean(np.sum(pt * (np.log(pt) - _np_log_softmax(student / temp)), axis=-1))


def _np_sml(yc, heads, y, alpha, lam, temp, beta1=1.0, beta2=1.0):
  n = len(heads)
  if n == 0:
    return _np_ce(yc, y)
  loss_c = (_np_ce(yc, y) + alpha * sum(_np_ce(h, y) for h in heads)) / (1 + n * alpha)
  kl = sum(beta1 * _np_kl(h, yc, temp) + beta2 * _np_kl(yc, h, temp) for h in heads)
  return (1 - lam) * loss_c + lam / (2 * n) * kl


def _logits(seed, n_heads=0, scale=3.0):
  rng = np.random.default_rng(seed)
  yc = rng.normal(size=(B, C)) * scale
  heads = [rng.normal(size=(B, C)) * scale for _ in range(n_heads)]
  labels = rng.integers(0, C, size=B)
  return yc, heads, labels


def _j(a):
  return jnp.asarray(a, jnp.float32)


def test_cross_entropy_and_accuracy_match_numpy():
  yc, _, y = _logits(0)
  np.testing.assert_allclose(L.cross_entropy(_j(yc), jnp.asarray(y)), _np_ce(yc, y), rtol=1e-5)
  expected_acc = np.mean(yc.argmax(-1) == y)
  assert float(L.accuracy(_j(yc), jnp.asarray(y))) == pytest.approx(expected_acc)


def test_cross_entropy_of_bf16_logits_is_float32():
  yc, _, y = _logits(1)
  loss = L.cross_entropy(jnp.asarray(yc, jnp.bfloat16), jnp.asarray(y))
  assert loss.dtype == jnp.float32
  reference = _np_ce(np.asarray(jnp.asarray(yc, jnp.bfloat16).astype(jnp.float32)), y)
  np.testing.assert_allclose(loss, reference, rtol=1e-5)


def test_cross_entropy_rejects_mismatched_labels():
  with pytest.raises(ValueError, match="labels of shape"):
    L.cross_entropy(jnp.zeros((B, C)), jnp.zeros((B + 1,), jnp.int32))


@pytest.mark.parametrize("n_heads", [0, 1, 2])
@pytest.mark.parametrize("alpha,lam,temp", [(0.5, 0.9, 3.0), (1.0, 1 / 3, 3.0), (0.2, 0.5, 1.0)])
def test_sml_loss_matches_numpy(n_heads, alpha, lam, temp):
  yc, heads, y = _logits(10 + n_heads, n_heads)
  loss = L.sml_loss(_j(yc), tuple(_j(h) for h in heads), jnp.asarray(y), alpha=alpha, lam=lam,
                    temperature=temp)
  np.testing.assert_allclose(loss, _np_sml(yc, heads, y, alpha, lam, temp), rtol=1e-5, atol=1e-6)


def test_sml_loss_with_uneven_betas_matches_numpy():
  yc, heads, y = _logits(20, 2)
  loss = L.sml_loss(_j(yc), [_j(h) for h in heads], jnp.asarray(y), beta1=0.3, beta2=2.0)
  np.testing.assert_allclose(loss, _np_sml(yc, heads, y, 0.5, 0.9, 3.0, 0.3, 2.0), rtol=1e-5)


def test_sml_loss_without_heads_is_cross_entropy():
  yc, _, y = _logits(30)
  loss = L.sml_loss(_j(yc), (), jnp.asarray(y), lam=0.9)
  assert float(loss) == float(L.cross_entropy(_j(yc), jnp.asarray(y)))


def test_sml_loss_parts_are_consistent():
  yc, heads, y = _logits(40, 2)
  parts = L.sml_loss_parts(_j(yc), [_j(h) for h in heads], jnp.asarray(y), alpha=0.5, lam=0.9,
                           temperature=3.0)
  np.testing.assert_allclose(parts["ce_main"], _np_ce(yc, y), rtol=1e-5)
  np.testing.assert_allclose(parts["ce_heads"], [_np_ce(h, y) for h in heads], rtol=1e-5)
  np.testing.assert_allclose(parts["kl"], [_np_kl(h, yc, 3.0) + _np_kl(yc, h, 3.0) for h in heads],
                             rtol=1e-4, atol=1e-7)
  assert float(parts["loss"]) == float(
      L.sml_loss(_j(yc), [_j(h) for h in heads], jnp.asarray(y)))


def _grads(beta1, beta2, lam=1.0):
  yc, heads, y = _logits(50, 2)
  fn = lambda yc, heads: L.sml_loss(yc, heads, jnp.asarray(y), lam=lam, beta1=beta1, beta2=beta2)
  return jax.grad(fn, argnums=(0, 1))(_j(yc), [_j(h) for h in heads])


def test_sml_kl_teachers_receive_no_gradient():
  # lam=1, beta2=0: only KL(sg(y_i) -> y_c) remains, so the heads get no gradient.
  g_c, g_heads = _grads(beta1=1.0, beta2=0.0)
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in g_heads)
  assert float(jnp.max(jnp.abs(g_c))) > 1e-4
  # lam=1, beta1=0: only KL(sg(y_c) -> y_i) remains, so the SNN logits get no gradient.
  g_c, g_heads = _grads(beta1=0.0, beta2=1.0)
  assert float(jnp.max(jnp.abs(g_c))) == 0.0
  assert all(float(jnp.max(jnp.abs(g))) > 1e-4 for g in g_heads)


def test_sml_loss_rejects_mismatched_head():
  with pytest.raises(ValueError, match=r"aux_logits\[1\]"):
    L.sml_loss(jnp.zeros((B, C)), [jnp.zeros((B, C)), jnp.zeros((B, C + 1))],
               jnp.zeros((B,), jnp.int32))


@pytest.mark.parametrize("lam,phi", [(1e-3, 1.0), (0.0, 1.0), (0.3, 0.5)])
def test_tet_loss_matches_numpy(lam, phi):
  rng = np.random.default_rng(60)
  seq = rng.normal(size=(4, B, C)) * 2
  y = rng.integers(0, C, size=B)
  expected = ((1 - lam) * np.mean([_np_ce(seq[t], y) for t in range(4)])
              + lam * np.mean([np.mean((seq[t] - phi)**2) for t in range(4)]))
  np.testing.assert_allclose(L.tet_loss(_j(seq), jnp.asarray(y), lam=lam, phi=phi), expected,
                             rtol=1e-5)


def test_tet_loss_needs_time_axis():
  with pytest.raises(ValueError, match=r"\[T, B, C\]"):
    L.tet_loss(jnp.zeros((B, C)), jnp.zeros((B,), jnp.int32))


# ---------------------------------------------------------------------------
# Lipschitz penalty.


def _params():
  rng = np.random.default_rng(70)
  return {
      "params": {
          "Conv_0": {"kernel": _j(rng.normal(size=(3, 3, 4, 6))), "bias": _j(rng.normal(size=6))},
          "block": {"Dense_0": {"kernel": _j(rng.normal(size=(7, 5)))}},
          "BatchNorm_0": {"scale": _j(np.ones(6))},
      }
  }


def _np_sigma(kernel):
  return np.linalg.svd(np.asarray(kernel).reshape(-1, kernel.shape[-1]), compute_uv=False)[0]


def test_lipschitz_state_holds_one_unit_vector_per_kernel():
  state = L.lipschitz_init(_params(), jax.random.key(0))
  assert set(state["params"]) == {"Conv_0", "block"}
  assert state["params"]["Conv_0"]["kernel"].shape == (6,)
  assert state["params"]["block"]["Dense_0"]["kernel"].shape == (5,)
  np.testing.assert_allclose(jnp.linalg.norm(state["params"]["Conv_0"]["kernel"]), 1.0, rtol=1e-6)


def test_lipschitz_penalty_converges_to_svd_with_carried_state():
  params = _params()
  state = L.lipschitz_init(params, jax.random.key(0))
  step = jax.jit(lambda p, s: L.lipschitz_penalty(p, s, n_iter=1))
  first, state = step(params, state)
  for _ in range(60):
    penalty, state = step(params, state)
  kernels = [params["params"]["Conv_0"]["kernel"], params["params"]["block"]["Dense_0"]["kernel"]]
  expected = sum(_np_sigma(k)**2 for k in kernels)
  np.testing.assert_allclose(penalty, expected, rtol=0.01)
  assert float(first) <= expected * (1 + 1e-5)  # power iteration approaches from below
  sigmas, _ = L.spectral_norms(params, state, n_iter=0)
  np.testing.assert_allclose(sigmas["params"]["Conv_0"]["kernel"], _np_sigma(kernels[0]), rtol=0.01)


def test_lipschitz_gradient_is_two_sigma_u_v():
  params = _params()
  state = L.lipschitz_init(params, jax.random.key(1))
  _, state = L.lipschitz_penalty(params, state, n_iter=200)
  grads = jax.grad(lambda p: L.lipschitz_penalty(p, state, n_iter=0)[0])(params)["params"]
  assert float(jnp.max(jnp.abs(grads["Conv_0"]["bias"]))) == 0.0
  kernel = np.asarray(params["params"]["Conv_0"]["kernel"])
  u, s, vt = np.linalg.svd(kernel.reshape(-1, 6), full_matrices=False)
  expected = 2 * s[0] * np.outer(u[:, 0], vt[0])
  got = np.asarray(grads["Conv_0"]["kernel"]).reshape(-1, 6)
  cosine = np.sum(got * expected) / (np.linalg.norm(got) * np.linalg.norm(expected))
  assert cosine > 0.999
  np.testing.assert_allclose(np.linalg.norm(got), np.linalg.norm(expected), rtol=0.01)


def test_lipschitz_state_must_match_params():
  state = L.lipschitz_init({"Dense_0": {"kernel": jnp.ones((3, 2))}}, jax.random.key(0))
  with pytest.raises(ValueError, match="Dense_1/kernel"):
    L.lipschitz_penalty({"Dense_1": {"kernel": jnp.ones((3, 2))}}, state)
