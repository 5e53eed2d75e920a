"""Surrogate spike functions: forward, backward formulas, dtypes, transforms, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import surrogates as S


def _np_sigmoid(z):
  return 1 / (1 + np.exp(-z))


# Independent NumPy statements of docs/methods.md section 2, with non-default parameters.
FORMULAS = {
    "rectangle": ({"alpha": 0.7}, lambda x, alpha: alpha * (np.abs(x) < 1 / (2 * alpha))),
    "triangle": ({"gamma": 0.8}, lambda x, gamma: np.maximum(0, gamma - np.abs(x)) / gamma**2),
    "sigmoid": ({"alpha": 3.0},
                lambda x, alpha: alpha * _np_sigmoid(alpha * x) * (1 - _np_sigmoid(alpha * x))),
    "atan": ({"alpha": 2.5}, lambda x, alpha: (alpha / 2) / (1 + (math.pi / 2 * alpha * x)**2)),
    "erf": ({"alpha": 1.5},
            lambda x, alpha: alpha / math.sqrt(math.pi) * np.exp(-alpha**2 * x**2)),
    "superspike": ({"alpha": 7.0}, lambda x, alpha: 1 / (alpha * np.abs(x) + 1)**2),
    "piecewise_quadratic": ({"alpha": 1.3},
                            lambda x, alpha: np.maximum(0, alpha - alpha**2 * np.abs(x))),
    "dspike": ({"b": 3.0, "r": 0.6},
               lambda x, b, r: np.where(np.abs(x) <= r,
                                        b * (1 - np.tanh(b * x)**2) / (2 * np.tanh(b * r)), 0)),
    "gsg_tanh": ({"beta": 0.4},
                 lambda x, beta: max(1 / beta, 1) * beta * (1 - np.tanh(beta * x)**2)),
}


@pytest.fixture
def x64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def _grid(dtype):
  # A dense grid that avoids the exact edges of compact supports.
  return jnp.asarray(np.linspace(-3.0, 3.0, 6001) + 1.234e-5, dtype)


def _input_grad(x, sg):
  return jax.grad(lambda x: jnp.sum(S.spike(x, sg)))(x)


def test_every_surrogate_name_has_a_formula_test():
  assert set(FORMULAS) == set(S.NAMES) - {"sgs"}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_backward_equals_formula(name, x64):
  params, formula = FORMULAS[name]
  sg = S.get(name, **params)
  x = _grid(jnp.float64)
  grad = _input_grad(x, jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), sg))
  expected = formula(np.asarray(x), **params)
  np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_forward_is_heaviside(name):
  sg = S.get(name)
  x = jnp.asarray([-2.0, -1e-7, 0.0, 1e-7, 3.0])
  np.testing.assert_array_equal(np.asarray(S.spike(x, sg)), [0, 0, 1, 1, 1])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_are_preserved(dtype):
  x = jnp.linspace(-1, 1, 11).astype(dtype)
  for name in FORMULAS:
    sg = S.get(name)
    assert S.spike(x, sg).dtype == dtype
    grad = _input_grad(x, sg)
    assert grad.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(grad.astype(jnp.float32))))


def test_bfloat16_gradient_close_to_float32():
  x = jnp.linspace(-1, 1, 101)
  sg = S.atan(2.0)
  g32 = _input_grad(x, sg)
  g16 = _input_grad(x.astype(jnp.bfloat16), sg).astype(jnp.float32)
  np.testing.assert_allclose(np.asarray(g16), np.asarray(g32), rtol=2e-2, atol=2e-3)


def test_works_under_jit_vmap_grad_and_scan():
  sg = S.sigmoid(4.0)
  x = jnp.linspace(-1, 1, 12).reshape(3, 4)
  row_grad = jax.grad(lambda row: jnp.sum(S.spike(row, sg)))
  direct = jax.vmap(row_grad)(x)
  np.testing.assert_allclose(np.asarray(direct), FORMULAS["sigmoid"][1](np.asarray(x), 4.0),
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(row_grad))(x)), np.asarray(direct))

  def scanned(x):
    _, out = jax.lax.scan(lambda c, row: (c, S.spike(row, sg)), 0.0, x)
    return jnp.sum(out)

  np.testing.assert_allclose(np.asarray(jax.grad(scanned)(x)), np.asarray(direct), rtol=1e-6)


def test_surrogate_parameters_receive_zero_gradient():
  x = jnp.linspace(-1, 1, 7)
  grads = jax.grad(lambda sg: jnp.sum(S.spike(x, sg)))(S.atan(2.0))
  assert float(grads.params["alpha"]) == 0.0


def test_changing_parameters_does_not_recompile():
  traces = []

  @jax.jit
  def grad_fn(x, sg):
    traces.append(1)
    return jax.grad(lambda x: jnp.sum(S.spike(x, sg, v_threshold=1.0)))(x)

  x = jnp.linspace(-1, 1, 9)
  results = [grad_fn(x, S.atan(alpha)) for alpha in (1.0, 2.0, 4.0)]
  results += [grad_fn(x, S.sgs(S.rectangle(a), delta=d)) for a, d in ((1.0, 0.1), (2.0, 0.5))]
  assert len(traces) == 2  # one trace per surrogate kind, none per value
  assert not np.allclose(np.asarray(results[0]), np.asarray(results[1]))
  assert not np.allclose(np.asarray(results[3]), np.asarray(results[4]))


def test_get_builds_sgs_and_rejects_bad_input():
  sg = S.get("sgs", base="triangle", delta=0.2, gamma=0.5)
  assert isinstance(sg, S.ScaledSurrogate)
  assert sg.base.name == "triangle" and float(sg.base.params["gamma"]) == 0.5
  with pytest.raises(ValueError, match="unknown surrogate 'atann'.*atan"):
    S.get("atann")
  with pytest.raises(ValueError, match="alpha > 0.*alpha=0"):
    S.get("rectangle", alpha=0.0)
  with pytest.raises(ValueError, match="gamma > 0"):
    S.triangle(gamma=-1.0)
  with pytest.raises(ValueError, match=r"takes parameters \['alpha'\]"):
    S.get("atan", beta=2.0)
  with pytest.raises(ValueError, match="delta >= 0"):
    S.sgs(S.rectangle(), delta=-0.1)
  with pytest.raises(ValueError, match="no parameter"):
    S.with_parameters(S.atan(), {"gamma": 1.0})
  with pytest.raises(ValueError, match="alpha > 0"):
    S.with_parameters(S.atan(), {"alpha": -1.0})


def test_parameters_round_trip():
  sg = S.sgs(S.dspike(), delta=0.3)
  params = S.parameters(sg)
  assert set(params) == {"b", "r", "delta"}
  new = S.with_parameters(sg, {"b": 1.5, "delta": 0.1})
  assert float(new.base.params["b"]) == 1.5 and float(new.delta) == pytest.approx(0.1)
  assert float(new.base.params["r"]) == 1.0


def test_support_halfwidth():
  assert float(S.support_halfwidth(S.rectangle(2.0))) == pytest.approx(0.25)
  assert float(S.support_halfwidth(S.triangle(0.5))) == pytest.approx(0.5)
  assert float(S.support_halfwidth(S.piecewise_quadratic(2.0))) == pytest.approx(0.5)
  assert float(S.support_halfwidth(S.sgs(S.dspike(r=0.7)))) == pytest.approx(0.7)
  assert np.isinf(float(S.support_halfwidth(S.atan())))


def test_constructors_come_from_the_table():
  import inspect
  for name, kind in S.KINDS.items():
    make = getattr(S, name)
    assert make.__name__ == name and make.__doc__ == kind.derivative.__doc__
    assert "h(x) =" in make.__doc__
    signature = inspect.signature(make)
    assert {k: p.default for k, p in signature.parameters.items()} == S.DEFAULTS[name]
    assert make().params.keys() == S.DEFAULTS[name].keys()
    positional = make(*(2 * v for v in S.DEFAULTS[name].values()))
    assert {k: float(v) for k, v in positional.params.items()} == {
        k: 2 * v for k, v in S.DEFAULTS[name].items()}
  with pytest.raises(TypeError):
    S.atan(beta=1.0)
  with pytest.raises(ValueError, match="needs alpha > 0"):
    S.rectangle(0.0)


def counted_input_grad():
  """(jitted d sum(spike(x, sg)) / dx, the list it appends to each time it is traced)."""
  traces = []

  @jax.jit
  def grad(x, sg):
    traces.append(1)
    return jax.grad(lambda x: jnp.sum(S.spike(x, sg)))(x)

  return grad, traces


def test_a_new_parameter_value_does_not_recompile():
  grad, traces = counted_input_grad()
  x = jnp.linspace(-1, 1, 5)
  for alpha in (1.0, 2.0, 3.0):
    np.testing.assert_allclose(np.asarray(grad(x, S.rectangle(alpha))),
                               FORMULAS["rectangle"][1](np.asarray(x), alpha), rtol=1e-6)
  assert len(traces) == 1


def test_unwrap_and_as_surrogate():
  plain = S.dspike(r=0.7)
  assert S.unwrap(plain) is plain and S.unwrap(S.sgs(plain)) is plain
  assert S.as_surrogate(plain) is plain  # parsed once, passed on unchanged
  assert S.as_surrogate("dspike(r=0.7)") == S.as_surrogate({"name": "dspike", "r": 0.7})
  assert S.COMPACT_SUPPORT == ("rectangle", "triangle", "piecewise_quadratic", "dspike")
  for name in S.COMPACT_SUPPORT:
    key, to_halfwidth = S.KINDS[name].width
    assert float(to_halfwidth(to_halfwidth(0.3))) == pytest.approx(0.3)  # its own inverse


# --- Surrogate gradient scaling: the six (o, v, sign g) cases of METHODS section 6.

SGS_CASES = [
    # (x = v - v_th, g): v = x + 1.
    (-1.3, +1.0),  # o=0, v < 0 (v below o), g > 0
    (-1.3, -1.0),  # o=0, v < 0, g < 0
    (-0.4, +1.0),  # o=0, 0 < v < v_th (v above o), g > 0
    (-0.4, -1.0),  # o=0, 0 < v < v_th, g < 0
    (0.3, +1.0),   # o=1, v > 1 (v above o), g > 0
    (0.3, -1.0),   # o=1, v > 1, g < 0
]


@pytest.mark.parametrize("x, g", SGS_CASES)
def test_sgs_scales_in_the_stated_direction(x, g):
  base = S.triangle(gamma=2.0)
  scaled = S.sgs(base, delta=0.5)
  x = jnp.asarray(x)
  base_grad = jax.grad(lambda x: g * S.spike(x, base))(x)
  sgs_grad = jax.grad(lambda x: g * S.spike(x, scaled, v_threshold=1.0))(x)
  v, o = float(x) + 1.0, float(x >= 0)
  expected = float(base_grad) * (1 + 0.5 * np.sign(g) * (v - o))
  assert float(sgs_grad) == pytest.approx(expected, rel=1e-6)
  # Amplified iff sign(g) (v - o) > 0: descent (-g) then moves v away from o's side.
  ratio = float(sgs_grad) / float(base_grad)
  assert (ratio > 1) == (np.sign(g) * (v - o) > 0)


def test_sgs_with_zero_delta_is_the_base_exactly():
  x = jnp.linspace(-2, 2, 41)
  w = jnp.cos(jnp.arange(41.0))
  for name in FORMULAS:
    base = S.get(name)
    g_base = jax.grad(lambda x: jnp.sum(w * S.spike(x, base)))(x)
    g_sgs = jax.grad(lambda x: jnp.sum(w * S.spike(x, S.sgs(base, delta=0.0), v_threshold=1.0)))(x)
    np.testing.assert_array_equal(np.asarray(g_sgs), np.asarray(g_base))


def test_parse_config_strings():
  sg = S.parse("dspike(b=3, r=0.5)")
  assert sg.name == "dspike" and float(sg.params["b"]) == 3.0 and float(sg.params["r"]) == 0.5
  assert S.parse(" atan ").name == "atan"
  scaled = S.parse("sgs(base=triangle, delta=0.25, gamma=0.5)")
  assert isinstance(scaled, S.ScaledSurrogate) and float(scaled.delta) == 0.25
  assert float(scaled.base.params["gamma"]) == 0.5
  with pytest.raises(ValueError, match="malformed surrogate spec 'atan\\(alpha=2'"):
    S.parse("atan(alpha=2")
  with pytest.raises(ValueError, match="'two' is not a number"):
    S.parse("atan(alpha=two)")
  with pytest.raises(ValueError, match="unknown surrogate 'relu'"):
    S.parse("relu")


def test_sgs_threshold_comes_from_the_caller_and_must_agree():
  x = jnp.asarray([-0.3, 0.2])
  unbound = S.sgs(S.rectangle(), delta=0.5)
  assert unbound.v_threshold is None
  with pytest.raises(ValueError, match="needs the neuron's threshold"):
    S.spike(x, unbound)
  bound = S.with_threshold(unbound, 0.5)
  assert float(bound.v_threshold) == 0.5
  plain = S.atan()
  assert S.with_threshold(plain, 0.5) is plain  # only SGS uses the threshold
  explicit = S.parse("sgs(base=rectangle, delta=0.5, v_threshold=1.0)")
  assert float(explicit.v_threshold) == 1.0
  assert float(S.with_threshold(explicit, 1.0).v_threshold) == 1.0
  with pytest.raises(ValueError, match=r"v_threshold=1 but its neuron's threshold is v_threshold=0.5"):
    S.with_threshold(explicit, 0.5)
  with pytest.raises(ValueError, match="v_threshold=0.5"):
    S.spike(x, explicit, v_threshold=0.5)
  # The threshold is not an adjustable parameter: schedules and controllers keep it.
  assert "v_threshold" not in S.parameters(bound)
  assert float(S.with_parameters(bound, {"delta": 0.1}).v_threshold) == 0.5


# --- Your own surrogate ------------------------------------------------------------------------


@pytest.fixture
def registry():
  """Leaves the surrogate table as it found it."""
  saved = dict(S.KINDS)
  yield S
  S.KINDS.clear()
  S.KINDS.update(saved)
  S._refresh_views()


def _laplace(x, a):
  """h(x) = a / 2 * exp(-a |x|)."""
  return a / 2 * jnp.exp(-a * jnp.abs(x))


def test_a_registered_surrogate_parses_and_its_parameters_never_recompile(registry):
  assert S.register("laplace", a=2.0)(_laplace) is _laplace
  sg = S.as_surrogate("laplace(a=3)")
  assert sg.name == "laplace" and float(sg.params["a"]) == 3.0
  assert "laplace" in S.NAMES and S.DEFAULTS["laplace"] == {"a": 2.0}
  input_grad, traces = counted_input_grad()
  x = jnp.linspace(-1.0, 1.0, 11)
  for a in (2.0, 3.0, 5.0):
    np.testing.assert_allclose(input_grad(x, S.get("laplace", a=a)), _laplace(x, a), rtol=1e-6)
  assert len(traces) == 1
  wrapped = S.as_surrogate("sgs(base=laplace, delta=0.0, a=4)")
  np.testing.assert_allclose(_input_grad(x, S.with_threshold(wrapped, 1.0)), _laplace(x, 4.0),
                             rtol=1e-6)


def test_a_registered_compact_surrogate_has_a_width_for_the_chi_controller(registry):
  from snnjax import chi, estimators

  def box(x, w):
    return (jnp.abs(x) < w).astype(x.dtype) / (2 * w)

  S.register("box", box, width=("w", lambda w: w), w=0.5)
  assert "box" in S.COMPACT_SUPPORT
  sg = S.get("box", w=0.25)
  assert float(S.support_halfwidth(sg)) == 0.25 and chi.width_parameter(sg) == "w"
  config = estimators.default_config()
  config.chi.update(dict(enabled=True, every_steps=1, target=0.5))
  estimators.validate_config(config, "box")
  update = estimators.make_estimator(config, sg, 10, 100).update
  widened = update({"sn1": {"w": jnp.float32(0.25)}}, jnp.int32(1), {"sn1": jnp.float32(0.1)})
  assert float(widened["sn1"]["w"]) > 0.25


@pytest.mark.parametrize("name, h, kwargs, message", [
    ("atan", _laplace, {"a": 1.0}, "'atan' is built in"),
    ("sgs", _laplace, {"a": 1.0}, "'sgs' is built in"),
    ("my-sg", _laplace, {"a": 1.0}, "must be an identifier"),
    ("mine", lambda a: a, {"a": 1.0}, r"h must be h\(x, a\).*got h\(a\)"),
    ("mine", lambda x, b: x * b, {"a": 1.0}, r"h must be h\(x, a\).*got h\(x, b\)"),
    ("mine", lambda x, a: jnp.sum(x) * a, {"a": 1.0}, r"element-wise.*shape \(\) for x of shape"),
    ("mine", lambda x, delta: x, {"delta": 1.0}, r"\['delta'\] are reserved"),
    ("mine", lambda x, a: x, {"a": 0.0}, "default a=0.0 must be a number > 0"),
    ("mine", lambda x, a: jnp.log(x) * a, {"a": 1.0}, "must return finite floats"),
    ("mine", "not a function", {"a": 1.0}, "h must be a function"),
])
def test_bad_registrations_name_the_problem(registry, name, h, kwargs, message):
  with pytest.raises(ValueError, match=message):
    S.register(name, h, **kwargs)
  assert set(S.KINDS) == set(S.BUILT_IN)


def test_a_width_map_must_be_its_own_inverse(registry):
  with pytest.raises(ValueError, match="its own inverse"):
    S.register("mine", _laplace, width=("a", lambda a: 2 * a), a=1.0)
  with pytest.raises(ValueError, match="parameter among"):
    S.register("mine", _laplace, width=("b", lambda a: a), a=1.0)
