"""Neuron modules, the surrogate state collection, and time-axis helpers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import layers as L
from snnjax import neurons as N
from snnjax import surrogates as S


class TinyNet(nn.Module):
  """Conv -> BN -> LIF -> Dense over T=3; the kind of stack the model zoo builds."""

  neuron: str = "lif"
  surrogate: S.SurrogateSpec = "atan"

  @nn.compact
  def __call__(self, images, train=True):
    x = L.time_major_input(images, T=3)
    x = nn.Conv(4, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = L.neuron(self.neuron, surrogate=self.surrogate)(x)
    x = x.reshape(*x.shape[:2], -1)
    return L.time_mean(nn.Dense(2)(x))


def _images():
  return jax.random.normal(jax.random.key(0), (2, 6, 6, 1)) + 0.5


def test_surrogate_parameters_live_in_their_collection():
  variables = TinyNet(surrogate={"name": "dspike", "b": 3.0}).init(jax.random.key(1), _images())
  state = variables[L.SURROGATE_COLLECTION]["LIF_0"]
  assert set(state) == {"b", "r"}
  assert float(state["b"]) == 3.0 and state["b"].dtype == jnp.float32
  assert "LIF_0" not in variables["params"]


def test_changing_surrogate_state_changes_gradients_without_recompiling():
  model = TinyNet(surrogate="rectangle")
  variables = model.init(jax.random.key(1), _images())
  traces = []

  @jax.jit
  def grads(variables):
    traces.append(1)

    def loss(params):
      out, _ = model.apply({**variables, "params": params}, _images(), mutable=["batch_stats"])
      return jnp.sum(out)

    return jax.grad(loss)(variables["params"])

  results = []
  for alpha in (0.5, 1.0, 2.0):
    surrogate_state = jax.tree.map(lambda _: jnp.asarray(alpha), variables["surrogate"])
    results.append(grads({**variables, "surrogate": surrogate_state}))
  assert len(traces) == 1
  kernels = [np.asarray(g["Conv_0"]["kernel"]) for g in results]
  assert not np.allclose(kernels[0], kernels[2])


def test_layer_equals_pure_function():
  x = jax.random.normal(jax.random.key(2), (4, 3, 5)) + 0.5
  layer = L.LIF(tau=3.0, reset="soft", surrogate=S.sigmoid(4.0))
  variables = layer.init(jax.random.key(0), x)
  spikes = layer.apply(variables, x)
  expected, _ = N.lif(x, tau=3.0, reset="soft", surrogate=S.sigmoid(4.0))
  np.testing.assert_array_equal(np.asarray(spikes), np.asarray(expected))


def test_plif_tau_is_a_trained_parameter():
  x = jax.random.normal(jax.random.key(2), (4, 3, 5)) + 0.5
  layer = L.PLIF(tau=2.0)
  variables = layer.init(jax.random.key(0), x)
  assert float(variables["params"]["w"]) == pytest.approx(0.0)
  grad = jax.grad(lambda p: jnp.sum(layer.apply({**variables, "params": p}, x)))(
      variables["params"])
  assert float(grad["w"]) != 0.0


def test_firing_rate_is_sown():
  model = TinyNet()
  variables = model.init(jax.random.key(1), _images())
  out, state = model.apply(variables, _images(), mutable=["batch_stats", L.ACTIVITY_COLLECTION])
  (rate,) = state[L.ACTIVITY_COLLECTION]["LIF_0"][L.FIRING_RATE]
  assert 0.0 < float(rate) < 1.0
  assert out.shape == (2, 2)


@pytest.mark.parametrize("kind", sorted(L.NEURONS))
def test_every_neuron_kind_trains(kind):
  model = TinyNet(neuron=kind)
  variables = model.init(jax.random.key(1), _images())
  loss = lambda p: jnp.sum(model.apply({**variables, "params": p}, _images(),
                                       mutable=["batch_stats"])[0] ** 2)
  grads = jax.grad(loss)(variables["params"])
  assert float(jnp.abs(grads["Conv_0"]["kernel"]).sum()) > 0


def test_bad_neuron_and_surrogate_specs():
  with pytest.raises(ValueError, match="unknown neuron 'lifx'.*if, lif, plif"):
    L.neuron("lifx")
  with pytest.raises(ValueError, match="neuron 'if' takes.*not \\['tau'\\]"):
    L.neuron("if", tau=2.0)
  with pytest.raises(ValueError, match="unknown surrogate 'foo'"):
    S.as_surrogate("foo")
  with pytest.raises(ValueError, match="'name' key"):
    S.as_surrogate({"alpha": 2.0})
  with pytest.raises(ValueError, match="cannot build a surrogate"):
    S.as_surrogate(3.0)


def test_time_helpers():
  images = jnp.arange(2 * 3 * 3 * 1.0).reshape(2, 3, 3, 1)
  seq = L.repeat_over_time(images, 4)
  assert seq.shape == (4, 2, 3, 3, 1)
  np.testing.assert_array_equal(np.asarray(seq[3]), np.asarray(images))
  folded = L.fold_time(seq)
  assert folded.shape == (8, 3, 3, 1)
  np.testing.assert_array_equal(np.asarray(L.unfold_time(folded, 4)), np.asarray(seq))
  np.testing.assert_array_equal(np.asarray(L.time_mean(seq)), np.asarray(images))
  assert L.time_major_input(images, 4).shape == (4, 2, 3, 3, 1)
  assert L.time_major_input(seq, 4) is seq


def test_time_helper_errors():
  with pytest.raises(ValueError, match="T must be >= 1, got T=0"):
    L.repeat_over_time(jnp.zeros((2, 3)), 0)
  with pytest.raises(ValueError, match="3 time steps but the model was built with T=4"):
    L.time_major_input(jnp.zeros((3, 2, 4, 4, 1)), 4)
  with pytest.raises(ValueError, match="expected images"):
    L.time_major_input(jnp.zeros((4, 4)), 4)
  with pytest.raises(ValueError, match="not a multiple of T=3"):
    L.unfold_time(jnp.zeros((8, 2)), 3)


def test_support_fraction_is_sown_for_compact_surrogates_and_shrinks_with_width():
  fractions = []
  for alpha in (0.5, 2.0, 8.0):  # rectangle half-width 1/(2 alpha): 1, 0.25, 0.0625
    model = TinyNet(surrogate=S.rectangle(alpha))
    variables = model.init(jax.random.key(1), _images())
    _, state = model.apply(variables, _images(), mutable=["batch_stats", L.ACTIVITY_COLLECTION])
    (fraction,) = state[L.ACTIVITY_COLLECTION]["LIF_0"][L.SUPPORT_FRACTION]
    fractions.append(float(fraction))
  assert 0 < fractions[2] < fractions[1] < fractions[0] <= 1
  model = TinyNet(surrogate="atan")
  variables = model.init(jax.random.key(1), _images())
  _, state = model.apply(variables, _images(), mutable=["batch_stats", L.ACTIVITY_COLLECTION])
  assert L.SUPPORT_FRACTION not in state[L.ACTIVITY_COLLECTION]["LIF_0"]


def test_return_charge_gives_the_pre_reset_membrane():
  x = jnp.asarray([0.6, 0.8, 0.2])
  spikes, _, h = N.lif(x, tau=2.0, return_charge=True)
  np.testing.assert_allclose(np.asarray(h), [0.6, 1.1, 0.2], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(spikes), np.asarray(h >= 1.0))


# --- Surrogate gradient scaling inside a neuron: the paper's six cases at v_th = 0.5. ---------


def _lif_input_grad(v_threshold, surrogate, h, g):
  """d sum(g * s) / d x of one LIF step (T=1, v starts at 0, so the charge is h = x)."""
  layer = L.LIF(v_threshold=v_threshold, surrogate=surrogate)
  x = jnp.asarray(h, jnp.float32)[None]  # [T=1, N]
  variables = layer.init(jax.random.key(0), x)
  return np.asarray(jax.grad(lambda x: jnp.sum(jnp.asarray(g) * layer.apply(variables, x)))(x))[0]


# The six cases of the SGS paper's figure (o = output spike, v = membrane, v_th = 0.5),
# each with the sign of the incoming gradient g the figure draws (descent, -g, moves v
# toward the other side: up for o=0, down for o=1) and |g_v| vs |g_o| as the figure states.
SGS_FIGURE_CASES = [
    # (v, g, expected ratio sign: +1 amplified, 0 equal, -1 damped)
    (0.0, -1.0, 0),    # o=0, v = o
    (-0.3, -1.0, +1),  # o=0, v < o
    (0.3, -1.0, -1),   # o=0, v > o (below threshold)
    (1.0, +1.0, 0),    # o=1, v = o
    (0.7, +1.0, -1),   # o=1, v_th <= v < o: the case v_th = 1 cannot have
    (1.3, +1.0, +1),   # o=1, v > o
]


def test_sgs_six_cases_through_a_lif_layer_at_threshold_one_half():
  v = np.asarray([c[0] for c in SGS_FIGURE_CASES])
  g = np.asarray([c[1] for c in SGS_FIGURE_CASES])
  delta = 0.5
  # A wide box (half-width 2) so every case lies inside the support: h(x) = 0.25.
  scaled = _lif_input_grad(0.5, f"sgs(base=rectangle, alpha=0.25, delta={delta})", v, g)
  plain = _lif_input_grad(0.5, "rectangle(alpha=0.25)", v, g)
  np.testing.assert_allclose(plain, g * 0.25, rtol=1e-6)
  o = (v >= 0.5).astype(np.float64)
  np.testing.assert_allclose(scaled, plain * (1 + delta * np.sign(g) * (v - o)), rtol=1e-6)
  ratio = scaled / plain
  expected = np.asarray([c[2] for c in SGS_FIGURE_CASES])
  np.testing.assert_array_equal(np.sign(np.round(ratio - 1, 6)), expected)


def test_sgs_is_two_sided_at_the_released_threshold_and_one_sided_at_one():
  """Released SGS code: v_th = 0.5, box half-width 0.5 (rectangle alpha=1).

  With g > 0 everywhere, inside the support the scale is 1 + delta (v - o): below the
  threshold (o = 0) v > 0 amplifies, above it (o = 1) v < 1 damps. At v_th = 1 the
  support is v in (0.5, 1.5) and v - o stays >= 0 on both sides: amplified throughout.
  """
  sgs = "sgs(base=rectangle, alpha=1.0, delta=0.5)"
  g = np.ones(4)
  half = _lif_input_grad(0.5, sgs, np.asarray([0.2, 0.4, 0.6, 0.8]), g)
  assert np.all(half[:2] > 1) and np.all(half[2:] < 1)
  one = _lif_input_grad(1.0, sgs, np.asarray([0.7, 0.9, 1.1, 1.3]), g)
  assert np.all(one >= 1)
  np.testing.assert_allclose(one, 1 + 0.5 * np.asarray([0.7, 0.9, 0.1, 0.3]), rtol=1e-6)


def test_sgs_threshold_mismatch_is_an_error_naming_both_values():
  layer = L.LIF(v_threshold=0.5, surrogate="sgs(base=rectangle, delta=0.5, v_threshold=1.0)")
  with pytest.raises(ValueError, match=r"v_threshold=1 .*v_threshold=0.5"):
    layer.init(jax.random.key(0), jnp.zeros((2, 3)))
  agreeing = L.LIF(v_threshold=0.5, surrogate="sgs(base=rectangle, delta=0.5, v_threshold=0.5)")
  agreeing.init(jax.random.key(0), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match=r"v_threshold=0.25"):
    N.lif(jnp.zeros((2, 3)), v_threshold=0.5,
          surrogate=S.sgs(S.rectangle(), delta=0.5, v_threshold=0.25))
