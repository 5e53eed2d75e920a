"""snnjax's neurons reproduce SpikingJelly's multi-step neurons (torch backend).

SpikingJelly is installed for tests only (see .ci/run). Spikes must agree
exactly; membranes agree to float32 rounding (the two frameworks order the same
arithmetic differently, e.g. v * (1 - 1/tau) versus v - v/tau); input gradients
of sum(spikes * w) agree within 1e-5.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import neurons as N
from snnjax import surrogates as S

torch = pytest.importorskip("torch")
sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

SURROGATES = {
    "sigmoid": (lambda: sj_surrogate.Sigmoid(alpha=4.0), lambda: S.sigmoid(4.0)),
    "atan": (lambda: sj_surrogate.ATan(alpha=2.0), lambda: S.atan(2.0)),
}

MEMBRANE_ATOL = 1e-6
GRAD_ATOL = 1e-5


def _inputs(seed, shape=(8, 4, 24)):
  rng = np.random.default_rng(seed)
  x = rng.normal(0.6, 1.0, shape).astype(np.float32)
  w = rng.normal(size=shape).astype(np.float32)
  return x, w


def _run_spikingjelly(node, x, w):
  """Spikes, membrane trace and d sum(spikes * w) / dx of a multi-step SpikingJelly node."""
  x_torch = torch.tensor(x, requires_grad=True)
  spikes = node(x_torch)
  (spikes * torch.tensor(w)).sum().backward()
  return spikes.detach().numpy(), node.v_seq.detach().numpy(), x_torch.grad.numpy()


def _run_snnjax(fn, x, w):
  spikes, v_seq = fn(jnp.asarray(x))
  grad = jax.grad(lambda x: jnp.sum(fn(x)[0] * w))(jnp.asarray(x))
  return np.asarray(spikes), np.asarray(v_seq), np.asarray(grad)


def _assert_agree(ours, theirs):
  spikes, v_seq, grad = ours
  sj_spikes, sj_v_seq, sj_grad = theirs
  assert 0.05 < sj_spikes.mean() < 0.95
  np.testing.assert_array_equal(spikes, sj_spikes)
  np.testing.assert_allclose(v_seq, sj_v_seq, rtol=0, atol=MEMBRANE_ATOL)
  np.testing.assert_allclose(grad, sj_grad, rtol=0, atol=GRAD_ATOL)


LIF_CASES = list(enumerate(itertools.product(
    [2.0, 1.5, 3.0],          # tau
    [False, True],            # decay_input
    [0.0, None],              # v_reset (None: SpikingJelly's soft reset)
    [False, True],            # detach_reset
    sorted(SURROGATES),
)))


@pytest.mark.parametrize("seed, case", LIF_CASES)
def test_lif_matches_spikingjelly(seed, case):
  tau, decay_input, v_reset, detach_reset, surrogate = case
  make_sj, make_ours = SURROGATES[surrogate]
  x, w = _inputs(seed)
  node = sj_neuron.LIFNode(tau=tau, decay_input=decay_input, v_reset=v_reset,
                           detach_reset=detach_reset, surrogate_function=make_sj(),
                           step_mode="m", store_v_seq=True)
  ours = lambda x: N.lif(x, tau=tau, decay_input=decay_input, v_reset=0.0,
                         reset="soft" if v_reset is None else "hard",
                         detach_reset=detach_reset, surrogate=make_ours(), trace=True)
  _assert_agree(_run_snnjax(ours, x, w), _run_spikingjelly(node, x, w))


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_if_matches_spikingjelly(v_reset):
  x, w = _inputs(seed=7)
  x = x * 0.5
  node = sj_neuron.IFNode(v_reset=v_reset, surrogate_function=sj_surrogate.ATan(alpha=2.0),
                          step_mode="m", store_v_seq=True)
  ours = lambda x: N.if_(x, reset="soft" if v_reset is None else "hard", surrogate=S.atan(2.0),
                         trace=True)
  _assert_agree(_run_snnjax(ours, x, w), _run_spikingjelly(node, x, w))


@pytest.mark.parametrize("decay_input", [True, False])
def test_plif_matches_spikingjelly_including_tau_gradient(decay_input):
  x, w = _inputs(seed=11)
  node = sj_neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input,
                                     surrogate_function=sj_surrogate.Sigmoid(alpha=4.0),
                                     step_mode="m", store_v_seq=True)
  w0 = N.plif_w_from_tau(2.0)
  assert float(node.w.detach()) == pytest.approx(w0)
  ours = lambda x, tau_w=w0: N.plif(x, tau_w, decay_input=decay_input,
                                    surrogate=S.sigmoid(4.0), trace=True)
  _assert_agree(_run_snnjax(ours, x, w), _run_spikingjelly(node, x, w))
  grad_w = jax.grad(lambda tau_w: jnp.sum(ours(jnp.asarray(x), tau_w)[0] * w))(jnp.asarray(w0))
  assert float(grad_w) == pytest.approx(float(node.w.grad), rel=1e-4, abs=1e-4)
