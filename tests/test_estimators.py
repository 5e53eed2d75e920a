"""Surrogate estimators: schedules (GSG), chi and the width controller, the config.estimator
block, gradient probes."""

import importlib.util
import math
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from snnjax import (chi, estimators, gradient_probe, layers, neurons, probe, schedules,
                    surrogates)

REPO = pathlib.Path(__file__).resolve().parents[1]
T = 2


class Net(nn.Module):
  """Dense -> LIF (sows its support fraction) -> Dense readout, mean over T."""

  surrogate: str = "rectangle"
  hidden: int = 16

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(self.hidden)(layers.repeat_over_time(x, T))
    spikes = layers.LIF(surrogate=self.surrogate, name="sn1")(h)
    return layers.time_mean(nn.Dense(3)(spikes))


def _net(surrogate, batch=4, features=6, hidden=16, seed=0):
  model = Net(surrogate=surrogate, hidden=hidden)
  kx, ky, kp = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (batch, features))
  y = jax.random.randint(ky, (batch,), 0, 3)
  variables = jax.jit(model.init)(kp, x)
  return model, variables, x, y


def _loss(model, variables, x, y):
  def loss(params):
    logits = model.apply({**variables, "params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss


def _config(**overrides):
  c = estimators.default_config()
  for key, value in overrides.items():
    block, leaf = key.split(".")
    c[block][leaf] = value
  return c


# --- Schedules ---------------------------------------------------------------------------------


def _closed_form(kind, start, end, p):
  """The schedules as stated in snnjax.schedules' docstring, in NumPy (float64)."""
  if kind == "constant":
    return np.full_like(p, start)
  if kind == "linear":
    return start + (end - start) * p
  if kind == "cosine":
    return end + (start - end) * 0.5 * (1 + np.cos(math.pi * p))
  return np.exp(math.log(start) + (math.log(end) - math.log(start)) * p)  # gsg, exponential


@pytest.mark.parametrize("unit", schedules.UNITS)
@pytest.mark.parametrize("kind", sorted(schedules.SCHEDULES))
def test_every_schedule_matches_its_closed_form_at_every_step(kind, unit):
  steps = np.arange(0, 260)
  ranges = [(0.5, 5.0), (5.0, 0.5), (2.0, 7.0), (1.0, 1.0)]
  if kind in ("constant", "linear", "cosine"):
    ranges += [(0.0, 0.5), (0.5, 0.0)]  # SGS's delta may start or end at 0
  for start, end in ranges:
    for steps_per_epoch, total_steps in [(10, 200), (7, 100), (1, 1), (3, 250)]:
      schedule = schedules.make_schedule(kind, start, end, unit=unit,
                                         steps_per_epoch=steps_per_epoch, total_steps=total_steps)
      values = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps, jnp.int32)))
      read_at = steps // steps_per_epoch * steps_per_epoch if unit == "epoch" else steps
      expected = _closed_form(kind, start, end, np.clip(read_at / total_steps, 0, 1))
      assert values.dtype == np.float32
      np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6 * max(start, end))


def test_gsg_beta_matches_the_formula_per_epoch_and_keeps_the_peak_at_one():
  b_min, b_max, epochs, steps_per_epoch = 0.5, 5.0, 200, 10
  schedule = schedules.make_schedule("gsg", b_min, b_max, unit="epoch",
                                     steps_per_epoch=steps_per_epoch,
                                     total_steps=epochs * steps_per_epoch)
  for e in (0, 1, 50, 100, 199, 200, 250):
    expected = math.exp(math.log(b_min) + (math.log(b_max) - math.log(b_min))
                        * min(e / epochs, 1.0))
    for step in (e * steps_per_epoch, e * steps_per_epoch + steps_per_epoch - 1):
      assert float(schedule(jnp.int32(step))) == pytest.approx(expected, rel=1e-6)
  assert float(schedule(jnp.int32(1000))) == pytest.approx(math.sqrt(b_min * b_max), 1e-6)
  # a = max(1/beta, 1), the one definition in surrogates.gsg_tanh: peak a beta = 1 while beta < 1.
  peak = lambda beta: float(surrogates.gsg_tanh(beta).derivative(jnp.float32(0.0)))
  assert peak(0.5) == 1.0 and peak(0.25) == 1.0 and peak(5.0) == 5.0


def test_make_schedule_rejects_bad_arguments():
  with pytest.raises(ValueError, match="unknown schedule kind 'step'"):
    schedules.make_schedule("step", 1.0, 2.0, unit="step", steps_per_epoch=1, total_steps=1)
  with pytest.raises(ValueError, match="unknown schedule unit 'epochs'"):
    schedules.make_schedule("linear", 1.0, 2.0, unit="epochs", steps_per_epoch=1, total_steps=1)
  with pytest.raises(ValueError, match="must be >= 1"):
    schedules.make_schedule("linear", 1.0, 2.0, unit="step", steps_per_epoch=0, total_steps=1)
  with pytest.raises(ValueError, match="needs start > 0 and end > 0"):
    schedules.make_schedule("gsg", 0.0, 2.0, unit="step", steps_per_epoch=1, total_steps=1)


@pytest.mark.parametrize("kind, start, end, mid, quarter", [
    ("constant", 2.0, 7.0, 2.0, 2.0),
    ("linear", 1.0, 3.0, 2.0, 1.5),
    ("cosine", 1.0, 3.0, 2.0, 3.0 + (1.0 - 3.0) * 0.5 * (1 + math.cos(math.pi / 4))),
    ("exponential", 1.0, 100.0, 10.0, 100.0 ** 0.25),
])
def test_generic_schedules_at_endpoints_and_midpoints(kind, start, end, mid, quarter):
  schedule = schedules.make_schedule(kind, start, end, unit="step", steps_per_epoch=7,
                                     total_steps=100)
  value = lambda step: float(schedule(jnp.int32(step)))
  assert value(0) == pytest.approx(start, rel=1e-6)
  assert value(50) == pytest.approx(mid, rel=1e-5)
  assert value(25) == pytest.approx(quarter, rel=1e-5)
  assert value(100) == pytest.approx(end if kind != "constant" else start, rel=1e-5)
  assert value(250) == value(100)  # past the end: the end value
  assert schedule(jnp.int32(3)).dtype == jnp.float32


def test_schedule_changes_the_surrogate_in_a_jitted_loop_without_recompiling():
  model, variables, x, y = _net("gsg_tanh(beta=0.5)")
  update = estimators.make_estimator(
      _config(**{"schedule.param": "beta", "schedule.kind": "gsg", "schedule.unit": "step"}),
      "gsg_tanh(beta=0.5)", steps_per_epoch=2, total_steps=4).update
  traces = []

  @jax.jit
  def train_step(params, surrogate_state, step):
    traces.append(1)  # runs only while tracing
    loss = _loss(model, {**variables, "surrogate": surrogate_state}, x, y)
    grads = jax.grad(loss)(params)
    return grads, update(surrogate_state, step + 1, {})

  state = variables["surrogate"]
  betas, grads = [], []
  for step in range(4):
    g, state = train_step(variables["params"], state, jnp.int32(step))
    betas.append(float(state["sn1"]["beta"]))
    grads.append(np.asarray(g["Dense_0"]["kernel"]))
  assert len(traces) == 1
  np.testing.assert_allclose(betas, [0.5 * 10 ** (s / 4) for s in range(1, 5)], rtol=1e-5)
  assert state["sn1"]["beta"].dtype == jnp.float32
  # Parameters never changed: only the surrogate did, and with it the gradient.
  assert np.abs(grads[0] - grads[-1]).max() > 1e-4


def test_nothing_enabled_is_the_identity():
  state = {"sn1": {"alpha": jnp.float32(2.0)}}
  update = estimators.make_estimator(estimators.default_config(), "atan", 10, 100).update
  assert update(state, jnp.int32(5), {"sn1": jnp.float32(0.3)}) is state


# --- Width helpers, support fractions and chi --------------------------------------------------


@pytest.mark.parametrize("spec", ["rectangle(alpha=2)", "triangle(gamma=0.7)",
                                  "piecewise_quadratic(alpha=3)", "dspike(b=2.5, r=0.8)",
                                  "sgs(base=triangle, gamma=0.4, delta=0.5)"])
def test_halfwidth_conversions_invert_each_other_and_match_support_halfwidth(spec):
  sg = surrogates.as_surrogate(spec)
  w = float(surrogates.support_halfwidth(sg))
  assert float(chi.params_to_halfwidth(sg, surrogates.parameters(sg))) == pytest.approx(w)
  params = chi.halfwidth_to_params(sg, 0.3)
  narrowed = surrogates.with_parameters(sg, params)
  assert float(surrogates.support_halfwidth(narrowed)) == pytest.approx(0.3, rel=1e-6)
  # The new support is exact: h is non-zero just inside 0.3 and zero just outside.
  base = narrowed.base if isinstance(narrowed, surrogates.ScaledSurrogate) else narrowed
  assert float(base.derivative(jnp.float32(0.29))) > 0
  assert float(base.derivative(jnp.float32(0.31))) == 0


def test_width_helpers_reject_non_compact_surrogates():
  with pytest.raises(ValueError, match="no compact support"):
    chi.halfwidth_to_params(surrogates.atan(), 0.5)


def test_support_fractions_reads_what_the_neuron_layers_sow():
  model, variables, x, _ = _net("rectangle(alpha=1)")
  _, updates = model.apply(variables, x, mutable=["intermediates"])
  fractions = chi.support_fractions(updates)
  h = nn.Dense(16).apply({"params": variables["params"]["Dense_0"]}, layers.repeat_over_time(x, T))
  _, _, charge = neurons.lif(h, surrogate=surrogates.rectangle(1.0), return_charge=True)
  expected = surrogates.support_fraction(charge - 1.0, surrogates.rectangle(1.0))
  assert list(fractions) == ["sn1"]
  assert float(fractions["sn1"]) == pytest.approx(float(expected))
  assert 0 < float(expected) < 1
  # The helper also takes the bare collection, and means over repeated calls.
  nested = {"a": {"sn2": {layers.SUPPORT_FRACTION: (jnp.float32(0.2), jnp.float32(0.4))}}}
  assert float(chi.support_fractions(nested)["a/sn2"]) == pytest.approx(0.3)


def test_chi_per_layer_equals_a_hand_count():
  grads = {"conv1": {"kernel": jnp.asarray([[0.0, 1.0], [2.0, 0.0]]), "bias": jnp.ones(2)},
           "block": {"fc": {"kernel": jnp.asarray([0.0, -3.0, 0.0])}},
           "sn1": {"w": jnp.float32(1.0)}}
  measured = jax.jit(chi.chi_per_layer)(grads)
  assert set(measured) == {"conv1", "block/fc"}
  assert float(measured["conv1"]) == 0.5
  assert float(measured["block/fc"]) == pytest.approx(1 / 3)


def test_narrowing_the_rectangle_lowers_chi_and_the_support_fraction():
  model, variables, x, y = _net("rectangle(alpha=1)")

  @jax.jit
  def chi_and_fraction(surrogate):
    v = {**variables, "surrogate": surrogate}
    grads = jax.grad(_loss(model, v, x, y))(variables["params"])
    _, updates = model.apply(v, x, mutable=["intermediates"])
    return (chi.chi_per_layer(grads)["Dense_0"],
            chi.support_fractions(updates)["sn1"])

  measured = {}
  for halfwidth in (2.0, 0.5, 0.05):
    surrogate = {"sn1": chi.halfwidth_to_params(surrogates.rectangle(), halfwidth)}
    measured[halfwidth] = tuple(map(float, chi_and_fraction(surrogate)))
  chis, fractions = zip(*(measured[w] for w in (2.0, 0.5, 0.05)))
  assert chis[0] > chis[1] > chis[2] and fractions[0] > fractions[1] > fractions[2]
  assert chis[2] < 0.5


# --- The width controller ----------------------------------------------------------------------


@pytest.mark.parametrize("start", [0.06, 2.5])
def test_controller_converges_monotonically_on_a_fixed_batch(start):
  model, variables, x, _ = _net("rectangle(alpha=1)", batch=64, hidden=64)
  sg = surrogates.rectangle()
  target = 0.2
  config = _config(**{"chi.enabled": True, "chi.target": target, "chi.rate": 1.0,
                      "chi.max_change": 1.1, "chi.every_steps": 1, "chi.tolerance": 0.005,
                      "chi.min_halfwidth": 0.05, "chi.max_halfwidth": 3.0})
  update = jax.jit(estimators.make_estimator(config, sg, steps_per_epoch=10,
                                             total_steps=1000).update)
  measure = jax.jit(lambda s: chi.support_fractions(
      model.apply({**variables, "surrogate": s}, x, mutable=["intermediates"])[1]))
  state = {"sn1": chi.halfwidth_to_params(sg, start)}
  widths, fractions = [], []
  for step in range(1, 121):
    f = measure(state)
    state = update(state, jnp.int32(step), f)
    fractions.append(float(f["sn1"]))
    widths.append(float(chi.params_to_halfwidth(sg, state["sn1"])))
  steps_taken = np.diff([start] + widths)
  assert np.all(steps_taken >= 0) if start < 1 else np.all(steps_taken <= 0)  # monotone
  assert abs(fractions[-1] - target) <= 0.02
  assert widths[-10:] == [widths[-1]] * 10  # settled: no oscillation
  factors = np.exp(np.abs(np.diff(np.log([start] + widths))))
  assert factors.max() <= 1.1 + 1e-5
  assert state["sn1"]["alpha"].dtype == jnp.float32
  assert update._cache_size() == 1  # the output fed back in never retraced the update


def test_controller_respects_bounds_and_dead_band():
  kw = dict(target=0.3, rate=5.0, min_halfwidth=0.1, max_halfwidth=1.0, max_change=2.0)
  assert float(chi.next_halfwidth(jnp.float32(0.9), jnp.float32(0.0), **kw)) == 1.0
  assert float(chi.next_halfwidth(jnp.float32(0.12), jnp.float32(1.0), **kw)) == \
      pytest.approx(0.1)
  assert float(chi.next_halfwidth(jnp.float32(0.5), jnp.float32(0.29), tolerance=0.02,
                                  **kw)) == 0.5
  assert float(chi.next_halfwidth(jnp.float32(0.5), jnp.float32(0.0), **kw)) == 1.0
  assert float(chi.next_halfwidth(jnp.float32(0.5), jnp.float32(0.25), **kw)) == \
      pytest.approx(0.5 * math.exp(5 * 0.05), rel=1e-6)


def test_controller_updates_only_every_n_steps_and_layers_with_a_fraction():
  config = _config(**{"chi.enabled": True, "chi.every_steps": 3, "chi.target": 0.5})
  update = estimators.make_estimator(config, "triangle", 10, 100).update
  state = {"a": {"sn1": {"gamma": jnp.float32(0.5)}}, "sn2": {"gamma": jnp.float32(0.5)}}
  fractions = {"a/sn1": jnp.float32(0.1)}
  assert float(update(state, jnp.int32(2), fractions)["a"]["sn1"]["gamma"]) == 0.5
  widened = update(state, jnp.int32(3), fractions)
  assert float(widened["a"]["sn1"]["gamma"]) == pytest.approx(0.55)  # max_change 1.1
  assert float(widened["sn2"]["gamma"]) == 0.5


def test_estimator_metrics_name_every_logged_scalar():
  state = {"sn1": {"gamma": jnp.float32(0.5)}, "b": {"sn2": {"gamma": jnp.float32(0.25)}}}
  grads = {"conv1": {"kernel": jnp.asarray([0.0, 1.0])}}
  steered = _config(**{"chi.enabled": True})
  metrics = estimators.estimator_metrics(state, "triangle", steered, grads,
                                         {"sn1": jnp.float32(0.4)})
  assert {k: float(v) for k, v in metrics.items()} == {
      "surrogate/sn1/gamma": 0.5, "surrogate/b/sn2/gamma": 0.25, "halfwidth/sn1": 0.5,
      "halfwidth/b/sn2": 0.25, "chi/conv1": 0.5, "support_fraction/sn1": pytest.approx(0.4)}


def test_estimator_metrics_leave_out_what_cannot_change():
  state = {"sn1": {"alpha": jnp.float32(2.0)}}
  grads = {"conv1": {"kernel": jnp.asarray([0.0, 1.0])}}
  off = _config()
  assert estimators.estimator_metrics(state, "atan", off, grads) == {}
  asked = estimators.estimator_metrics(state, "atan", _config(**{"chi.log": True}), grads)
  assert set(asked) == {"chi/conv1"}
  scheduled = _config(**{"schedule.param": "alpha", "schedule.kind": "linear"})
  assert set(estimators.estimator_metrics(state, "atan", scheduled, grads)) == {
      "surrogate/sn1/alpha"}
  gsg = {"sn1": {"beta": jnp.float32(1.0)}}
  assert set(estimators.estimator_metrics(gsg, "gsg_tanh", _config(**{
      "schedule.param": "beta"}), grads)) == {"surrogate/sn1/beta"}


# --- Config validation -------------------------------------------------------------------------


@pytest.mark.parametrize("surrogate, overrides, message", [
    ("rectangle", {"schedule.param": "beta"}, r"schedule.param='beta' is not a parameter"),
    ("sigmoid", {"schedule.param": "alpha"}, r"kind='gsg' anneals gsg_tanh's beta"),
    ("gsg_tanh", {"schedule.param": "beta", "schedule.unit": "epochs"}, r"unit='epochs'"),
    ("gsg_tanh", {"schedule.param": "beta", "schedule.kind": "step"}, r"kind='step' unknown"),
    ("gsg_tanh", {"schedule.param": "beta", "schedule.start": 0.0}, r"start=0.0 must be"),
    ("sigmoid", {"schedule.param": "alpha", "schedule.kind": "linear", "schedule.end": -1.0},
     r"end=-1.0 must be a number > 0"),
    ("atan", {"chi.enabled": True}, r"needs a surrogate with compact support"),
    ("rectangle", {"chi.enabled": True, "schedule.param": "alpha", "schedule.kind": "linear"},
     r"is the width the chi controller sets"),
    ("triangle", {"chi.enabled": True, "chi.target": 1.5}, r"chi.target=1.5 must be in \(0, 1\)"),
    ("triangle", {"chi.enabled": True, "chi.max_change": 1.0}, r"max_change=1.0 must be > 1"),
    ("triangle", {"chi.enabled": True, "chi.every_steps": 0},
     r"every_steps=0 must be a positive int"),
    ("triangle", {"chi.enabled": True, "chi.min_halfwidth": 2.0, "chi.max_halfwidth": 1.0},
     r"0 < min <= max"),
])
def test_bad_estimator_config_is_named(surrogate, overrides, message):
  with pytest.raises(ValueError, match=message):
    estimators.validate_config(_config(**overrides), surrogate)


def test_unknown_and_missing_keys_are_named():
  c = estimators.default_config().to_dict()
  c["chi"]["gain"] = 1.0
  with pytest.raises(ValueError, match=r"unknown config.estimator keys \['chi.gain'\]"):
    estimators.validate_config(c, "rectangle")
  del c["chi"]["gain"], c["schedule"]["unit"]
  with pytest.raises(ValueError, match=r"lacks keys \['schedule.unit'\]"):
    estimators.validate_config(c, "rectangle")


def test_valid_combinations_pass():
  estimators.validate_config(_config(**{"schedule.param": "b", "schedule.kind": "linear",
                                        "schedule.start": 1.0, "schedule.end": 4.0,
                                        "chi.enabled": True}), "dspike")
  estimators.validate_config(_config(**{"schedule.param": "delta", "schedule.kind": "linear",
                                        "schedule.start": 0.0, "chi.enabled": True}),
                             "sgs(base=rectangle, delta=0.5)")


@pytest.mark.parametrize("name", ["fmnist_vgg_gsg", "cifar10_vggsmall_gsg", "imagenet_sew34_chi",
                                  "fmnist_vgg_chi"])
def test_estimator_configs_validate(name):
  spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  estimators.validate_config(c.estimator, c.model.surrogate)
  assert bool(c.estimator.schedule.param) or c.estimator.chi.enabled
  if c.estimator.schedule.param:  # the model starts where the schedule starts
    initial = surrogates.parameters(surrogates.as_surrogate(c.model.surrogate))
    assert float(initial[c.estimator.schedule.param]) == pytest.approx(c.estimator.schedule.start)


# --- Gradient probes ---------------------------------------------------------------------------


def _smooth_problem():
  k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
  params = {"l1": {"kernel": jax.random.normal(k1, (5, 4)) * 0.5},
            "l2": {"kernel": jax.random.normal(k2, (4, 3)) * 0.5, "bias": jnp.zeros(3)}}
  x = jax.random.normal(k3, (8, 5))

  def loss(p):
    out = jnp.tanh(x @ p["l1"]["kernel"]) @ p["l2"]["kernel"] + p["l2"]["bias"]
    return jnp.mean(jnp.sin(out) + out ** 2)
  return params, loss, x


def test_probe_finite_differences_match_the_exact_gradient_of_a_smooth_function():
  params, loss, x = _smooth_problem()
  first_layer_only = lambda p: jnp.mean(jnp.tanh(x @ p["l1"]["kernel"]) ** 2)
  results = gradient_probe.gradient_probe(
      loss, params, jax.random.key(0), num_directions=8, step_size=1e-2, num_bootstrap=200,
      reference_loss_fns={"negated": lambda p: -loss(p), "first": first_layer_only})
  assert [r.layer for r in results] == ["l1", "l2"]
  for r in results:
    assert r.cosine > 0.99 and r.relative_error < 0.05
    assert 0.99 < r.cosine_ci[0] <= r.cosine_ci[1] <= 1 + 1e-9
    assert r.surrogate.shape == r.finite_difference.shape == (8,)
    assert r.references["negated"][0] < -0.99
  assert math.isnan(results[1].references["first"][0])  # that loss ignores l2


def test_probe_on_a_tiny_snn_gives_finite_values_with_intervals():
  model, variables, x, y = _net("atan", batch=16)
  results = gradient_probe.gradient_probe(_loss(model, variables, x, y), variables["params"],
                                          jax.random.key(0), num_directions=6, step_size=0.1,
                                          num_bootstrap=200)
  assert [r.layer for r in results] == ["Dense_0", "Dense_1"]
  for r in results:
    values = [r.cosine, *r.cosine_ci, r.relative_error, *r.relative_error_ci]
    assert all(math.isfinite(v) for v in values)
    assert -1 <= r.cosine_ci[0] <= r.cosine_ci[1] <= 1 and r.step_size > 0
  # No spike after the readout: its surrogate gradient is the exact gradient.
  assert results[1].cosine > 0.95


def test_probe_rejects_bad_arguments():
  params, loss, _ = _smooth_problem()
  with pytest.raises(ValueError, match="num_directions=1"):
    gradient_probe.gradient_probe(loss, params, jax.random.key(0), num_directions=1)
  with pytest.raises(ValueError, match=r"layers \['l3'\] have no kernel"):
    gradient_probe.gradient_probe(loss, params, jax.random.key(0), layers_to_probe=["l3"])


def test_probe_report_table_and_plot(tmp_path):
  def layer(name, cosine, head):
    values = np.asarray([1.0, -1.0])
    return gradient_probe.LayerProbe(name, 10, 0.1, values, values, cosine,
                                     (cosine - 0.1, cosine), 0.5, (0.4, 0.6), {"head_1": head})
  results = [layer("conv1", 0.8, (0.9, (0.85, 0.95))),
             layer("fc", 0.2, (math.nan, (math.nan, math.nan)))]
  table = probe.format_table(results, "probe")
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  assert len(rows) == 3 and "cosine (head_1)" in rows[0]
  assert rows[1] == ("| 1 | conv1 | - | 10 | 0.1 | 0.800 [0.700, 0.800] | 0.500 [0.400, 0.600] "
                     "| 0.900 [0.850, 0.950] |")  # "-": no recorded input of this layer
  assert rows[2].startswith("| 2 | fc |") and rows[2].endswith("| n/a |")
  probe.plot(results, tmp_path / "probe.png")
  assert (tmp_path / "probe.png").stat().st_size > 1000
