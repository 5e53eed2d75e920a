"""Spike functions: Heaviside forward, surrogate-gradient backward.

Notation: ``x = v - v_threshold`` (membrane potential minus threshold, in the
neuron's voltage units). The forward pass of :func:`spike` is always the
Heaviside step ``H(x) = 1[x >= 0]``; a surrogate only replaces ``dH/dx`` in the
backward pass by a function ``h(x)``. Parameterisation follows SpikingJelly so
that published settings carry over.

A surrogate is a small pytree, :class:`Surrogate`: its ``name`` is static and its
parameters are array leaves. Passing a surrogate with new parameter values to an
already compiled function therefore never recompiles, which is what lets
schedules (gradual surrogate gradient) and controllers (chi-guided widths) change
surrogates during training.

    sg = atan(alpha=2.0)
    s = spike(x, sg)                       # H(x); d s / d x := (alpha/2) / (1 + (pi/2 alpha x)^2)
    sg = sgs(rectangle(), delta=0.5)       # surrogate gradient scaling wrapper
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from snnjax import validation

Array = jax.Array
Derivative = Callable[..., Array]


@struct.dataclass
class Surrogate:
  """A surrogate gradient: a static name and its (traced) parameters.

  Attributes:
    name: key into :data:`KINDS`.
    params: parameter name -> scalar array, e.g. ``{"alpha": 2.0}``.
  """

  name: str = struct.field(pytree_node=False)
  params: Mapping[str, Array]

  def derivative(self, x: Array) -> Array:
    """h(x): the surrogate's replacement for dH/dx, in x's dtype."""
    params = {k: jnp.asarray(p, x.dtype) for k, p in self.params.items()}
    return KINDS[self.name].derivative(x, **params)


@struct.dataclass
class ScaledSurrogate:
  """Surrogate gradient scaling (SGS) around a base surrogate.

  From "Surrogate gradient scaling for directly training spiking neural
  networks" (Chen et al., Applied Intelligence 2023). With incoming gradient
  g_o, output spike o = H(x) and membrane potential v = x + v_threshold:

      g_v = g_o * h(x) * (1 + delta * sign(g_o) * (v - o))

  snnjax's choice: this is the element-wise gradient scaling (EWGS) form, which
  matches the paper's figure of the six (o, v, sign g_o) cases; the paper's own
  equation is not public. v = x + v_th is compared with o in the neuron's
  voltage units, so the scale depends on the threshold: at v_th = 1 (snnjax's
  default neuron) v - o lies in [0, 1) wherever a rectangle of half-width 0.5
  is non-zero, so every positive g_o is amplified and every negative one damped
  on both sides of the threshold; at v_th = 0.5 (the released SGS code) v - o
  changes sign at the threshold as in the paper's figure.

  One source of truth for v_th: the neuron. :func:`spike` takes the threshold
  x is measured from, and the neurons of :mod:`snnjax.neurons` pass theirs;
  ``v_threshold`` here is None ("the neuron's") unless given explicitly, and
  an explicit value that disagrees with the neuron's is a ValueError
  (:func:`with_threshold`).

  Attributes:
    base: the surrogate h that is scaled.
    delta: scaling strength (dimensionless); 0 reproduces ``base`` exactly.
    v_threshold: None (take the neuron's threshold), or the threshold a spec
      asserted, float32 scalar.
  """

  base: Surrogate
  delta: Array
  v_threshold: Array | None = None

  @property
  def name(self) -> str:
    return f"sgs({self.base.name})"


AnySurrogate = Surrogate | ScaledSurrogate


# ---------------------------------------------------------------------------
# Derivatives h(x). Each takes x and its parameters as arrays of x's dtype; its
# docstring (the formula) is also the docstring of the surrogate's constructor.


def _rectangle(x, alpha):
  """Box surrogate: h(x) = alpha * 1[|x| < 1/(2 alpha)], width 1/alpha (the box of STBP)."""
  return alpha * (jnp.abs(x) < 0.5 / alpha).astype(x.dtype)


def _triangle(x, gamma):
  """Triangle surrogate: h(x) = max(0, gamma - |x|) / gamma^2, support |x| < gamma."""
  return jnp.maximum(gamma - jnp.abs(x), 0) / (gamma * gamma)


def _sigmoid(x, alpha):
  """Sigmoid surrogate: h(x) = alpha * sig(alpha x) (1 - sig(alpha x))."""
  sig = jax.nn.sigmoid(alpha * x)
  return alpha * sig * (1 - sig)


def _atan(x, alpha):
  """Arctangent surrogate: h(x) = (alpha/2) / (1 + (pi/2 * alpha x)^2)."""
  return (alpha / 2) / (1 + jnp.square((math.pi / 2) * alpha * x))


def _erf(x, alpha):
  """Gaussian (erf) surrogate: h(x) = alpha/sqrt(pi) * exp(-alpha^2 x^2)."""
  return alpha / math.sqrt(math.pi) * jnp.exp(-jnp.square(alpha * x))


def _superspike(x, alpha):
  """SuperSpike fast sigmoid: h(x) = 1 / (alpha |x| + 1)^2."""
  return 1 / jnp.square(alpha * jnp.abs(x) + 1)


def _piecewise_quadratic(x, alpha):
  """Piecewise quadratic: h(x) = max(0, alpha - alpha^2 |x|), support |x| < 1/alpha."""
  return jnp.maximum(alpha - alpha * alpha * jnp.abs(x), 0)


def _dspike(x, b, r):
  """Dspike: h(x) = b (1 - tanh^2(b x)) / (2 tanh(b r)) on |x| <= r, else 0.

  From "Differentiable Spike: Rethinking Gradient-Descent for Training Spiking
  Neural Networks" (Li et al., NeurIPS 2021); b=2.5, r=1 is the setting of
  "Surrogate Module Learning" (Deng et al., ICML 2023).
  """
  inside = (jnp.abs(x) <= r).astype(x.dtype)
  return inside * b * (1 - jnp.square(jnp.tanh(b * x))) / (2 * jnp.tanh(b * r))


def _gsg_tanh(x, beta):
  """Gradual surrogate: h(x) = a beta (1 - tanh^2(beta x)), a = max(1/beta, 1).

  From "Gradual Surrogate Gradient Learning in Deep Spiking Neural Networks"
  (Chen et al., ICASSP 2022); a keeps the peak a beta at 1 while beta < 1, and
  beta is annealed by a schedule (:mod:`snnjax.schedules`).
  """
  a = jnp.maximum(1 / beta, 1)
  return a * beta * (1 - jnp.square(jnp.tanh(beta * x)))


@dataclasses.dataclass(frozen=True)
class Kind:
  """Everything snnjax knows about one surrogate.

  Attributes:
    derivative: h(x, **params); its docstring states the formula.
    defaults: default parameters (SpikingJelly's / the papers' settings).
    width: compact surrogates only: (parameter p that sets the support
      half-width w, the map p -> w). Each map is its own inverse (w = c/p or
      w = p), so it also gives p from w, keeping the area under h at 1.
  """

  derivative: Derivative
  defaults: Mapping[str, float]
  width: tuple[str, Callable[[Any], Any]] | None = None


#: The surrogates: name -> :class:`Kind`. The one table; everything below is read from it.
#: :func:`register` adds your own.
KINDS: dict[str, Kind] = {
    "rectangle": Kind(_rectangle, {"alpha": 1.0}, ("alpha", lambda p: 0.5 / p)),
    "triangle": Kind(_triangle, {"gamma": 1.0}, ("gamma", lambda p: p)),
    "sigmoid": Kind(_sigmoid, {"alpha": 4.0}),
    "atan": Kind(_atan, {"alpha": 2.0}),
    "erf": Kind(_erf, {"alpha": 2.0}),
    "superspike": Kind(_superspike, {"alpha": 10.0}),
    "piecewise_quadratic": Kind(_piecewise_quadratic, {"alpha": 1.0}, ("alpha", lambda p: 1 / p)),
    "dspike": Kind(_dspike, {"b": 2.5, "r": 1.0}, ("r", lambda p: p)),
    "gsg_tanh": Kind(_gsg_tanh, {"beta": 1.0}),
}
BUILT_IN: tuple[str, ...] = tuple(KINDS)

#: Default parameters of every surrogate (a view of :data:`KINDS`).
DEFAULTS: dict[str, dict[str, float]] = {}
#: Every surrogate name accepted by :func:`get`.
NAMES: tuple[str, ...] = ()
#: Surrogates with compact support, i.e. h(x) = 0 outside a finite interval.
COMPACT_SUPPORT: tuple[str, ...] = ()


def _refresh_views() -> None:
  """Recomputes :data:`DEFAULTS`, :data:`NAMES` and :data:`COMPACT_SUPPORT` from :data:`KINDS`."""
  global NAMES, COMPACT_SUPPORT
  DEFAULTS.clear()
  DEFAULTS.update({name: dict(k.defaults) for name, k in KINDS.items()})
  NAMES = tuple(KINDS) + ("sgs",)
  COMPACT_SUPPORT = tuple(name for name, k in KINDS.items() if k.width)


_refresh_views()

#: Names a surrogate parameter cannot take: the spike input and what ``sgs(...)`` specs use.
RESERVED_PARAMETERS = ("x", "name", "base", "delta", "v_threshold")


def register(name: str, derivative: Derivative | None = None, *,
             width: tuple[str, Callable[[Any], Any]] | None = None, **defaults: float):
  """Adds your own surrogate h(x), usable wherever a built-in one is.

  After ``register("mine", h, a=2.0)`` the spec strings ``"mine"`` and
  ``"mine(a=3)"`` work in ``config.model.surrogate``, in ``sgs(base=mine, ...)``,
  and :func:`get` builds it; ``config.estimator.schedule.param="a"`` schedules it.
  Its parameters are float32 array leaves like every surrogate's, so changing them
  never recompiles. Used as a decorator when ``derivative`` is omitted::

      @surrogates.register("mine", a=2.0)
      def mine(x, a):  # h(x) = a / 2 * exp(-a |x|)
        return a / 2 * jnp.exp(-a * jnp.abs(x))

  Args:
    name: a new name (an identifier), or one registered before by this function
      (which replaces it); the built-in names and "sgs" are taken.
    derivative: ``h(x, **params)``, element-wise in x (x = v - v_threshold); its
      parameters after x are exactly the keys of ``defaults``.
    width: for compact support, ``(parameter, map)``: the map takes the parameter to
      the support half-width w (units of x) and must be its own inverse (w = c/p or
      w = p), so the chi controller can set the parameter from a width.
    **defaults: every parameter's default value (> 0).

  Returns:
    ``derivative`` (so the decorator leaves the function usable).

  Raises:
    ValueError: a taken or malformed name, a parameter clash, an h that is not
      a function of x and its parameters or not element-wise, a bad width.
  """
  if derivative is None:
    return lambda function: register(name, function, width=width, **defaults)
  _check_registration(name, derivative, width, defaults)
  KINDS[name] = Kind(derivative, dict(defaults), width)
  _refresh_views()
  return derivative


def _check_registration(name: str, derivative: Any, width: Any, defaults: Mapping) -> None:
  validation.check(isinstance(name, str) and name.isidentifier(),
                   f"surrogate name {name!r} must be an identifier, e.g. 'mine'.")
  validation.check(name not in BUILT_IN and name != "sgs",
                   f"surrogate name {name!r} is built in; register yours under another name.")
  validation.check(callable(derivative), f"surrogate {name!r}: h must be a function h(x, "
                   f"{', '.join(defaults)}), got {derivative!r}.")
  clashes = sorted(set(defaults) & set(RESERVED_PARAMETERS))
  validation.check(not clashes, f"surrogate {name!r}: parameter name(s) {clashes} are reserved "
                   f"({', '.join(RESERVED_PARAMETERS)}); rename them.")
  for key, value in defaults.items():
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    validation.check(number and value > 0, f"surrogate {name!r}: default {key}={value!r} must be "
                     "a number > 0.")
  arguments = list(inspect.signature(derivative).parameters)
  validation.check(arguments[1:] == list(defaults) and len(arguments) == len(defaults) + 1,
                   f"surrogate {name!r}: h must be h(x, {', '.join(defaults)}) (x first, then "
                   f"exactly the parameters given as defaults), got h({', '.join(arguments)}).")
  x = jnp.linspace(-2.0, 2.0, 9, dtype=jnp.float32).reshape(3, 3)
  try:
    h = jnp.asarray(derivative(x, **{k: jnp.float32(v) for k, v in defaults.items()}))
  except Exception as error:  # the user's function: any failure is reported as bad input
    raise ValueError(f"surrogate {name!r}: h(x, ...) failed on a float32 array x: "
                     f"{type(error).__name__}: {error}") from None
  validation.check(h.shape == x.shape, f"surrogate {name!r}: h must be element-wise in x, but "
                   f"returned shape {h.shape} for x of shape {x.shape}.")
  validation.check(jnp.issubdtype(h.dtype, jnp.floating) and bool(jnp.all(jnp.isfinite(h))),
                   f"surrogate {name!r}: h must return finite floats, got {h.dtype} values {h}.")
  if width is not None:
    ok = (isinstance(width, tuple) and len(width) == 2 and width[0] in defaults
          and callable(width[1]))
    validation.check(ok, f"surrogate {name!r}: width must be (parameter, map) with the parameter "
                     f"among {list(defaults)}, got {width!r}.")
    p = np.asarray([0.3, 1.0, 2.5], np.float32)
    round_trip = np.asarray(width[1](width[1](p)), np.float32)
    validation.check(np.allclose(round_trip, p, rtol=1e-5), f"surrogate {name!r}: the width map "
                     "must be its own inverse (w = c/p or w = p): map(map(p)) != p.")


def unwrap(sg: AnySurrogate) -> Surrogate:
  """The plain surrogate inside ``sg``: an SGS wrapper's base, else ``sg`` itself."""
  return sg.base if isinstance(sg, ScaledSurrogate) else sg


def _check_positive(name: str, params: Mapping[str, Any]) -> None:
  """Rejects concrete non-positive widths; traced values pass unchecked."""
  for key, value in params.items():
    validation.check_all(value, lambda p: p > 0,
                         f"surrogate {name!r} needs {key} > 0, got {key}={value}. "
                         f"Defaults: {DEFAULTS[name]}.")


def _make(name: str, **params: Any) -> Surrogate:
  _check_positive(name, params)
  return Surrogate(name=name, params={k: jnp.asarray(v, jnp.float32) for k, v in params.items()})


def _constructor(name: str) -> Callable[..., Surrogate]:
  """The public constructor of surrogate ``name``: its defaults as keyword defaults, its
  derivative's formula as docstring; parameters become float32 array leaves."""
  kind = KINDS[name]
  signature = inspect.Signature(
      [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=v, annotation=float)
       for k, v in kind.defaults.items()], return_annotation=Surrogate)

  def construct(*args: Any, **kwargs: Any) -> Surrogate:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return _make(name, **bound.arguments)

  construct.__name__ = construct.__qualname__ = name
  construct.__doc__ = kind.derivative.__doc__
  construct.__signature__ = signature
  return construct


(rectangle, triangle, sigmoid, atan, erf, superspike, piecewise_quadratic, dspike,
 gsg_tanh) = (_constructor(name) for name in BUILT_IN)


def sgs(base: Surrogate, delta: float = 0.5, v_threshold: float | None = None) -> ScaledSurrogate:
  """Wraps ``base`` in surrogate gradient scaling; see :class:`ScaledSurrogate`.

  ``v_threshold`` None (the default) takes the threshold of the neuron the
  surrogate is used in; a number asserts it, and a neuron with another
  threshold rejects the surrogate (:func:`with_threshold`).
  """
  if not isinstance(base, Surrogate):
    raise ValueError(f"sgs wraps a plain surrogate, got {base!r}; e.g. sgs(rectangle(), delta=0.5).")
  validation.check_all(delta, lambda d: d >= 0, f"sgs needs delta >= 0, got delta={delta}.")
  threshold = None if v_threshold is None else jnp.asarray(v_threshold, jnp.float32)
  return ScaledSurrogate(base=base, delta=jnp.asarray(delta, jnp.float32), v_threshold=threshold)


def with_threshold(sg: AnySurrogate, v_threshold: Any) -> AnySurrogate:
  """``sg`` bound to the threshold of the neuron it fires in (SGS only; others unchanged).

  An SGS surrogate without a threshold takes ``v_threshold``; one whose
  explicit threshold disagrees with it (compared in the lower precision of
  the two) raises ValueError naming both values. Traced values are bound
  without the check (they were checked where they were concrete).

  Raises:
    ValueError: an explicit SGS threshold that is not the neuron's.
  """
  if not isinstance(sg, ScaledSurrogate):
    return sg
  neuron = jnp.asarray(v_threshold)
  if not jnp.issubdtype(neuron.dtype, jnp.floating):
    neuron = neuron.astype(jnp.float32)
  if sg.v_threshold is not None:
    own, theirs = validation.concrete(sg.v_threshold), validation.concrete(neuron)
    if own is not None and theirs is not None:
      dtype = min(own.dtype, theirs.dtype, key=lambda d: jnp.finfo(d).bits)
      if not np.array_equal(own.astype(dtype), theirs.astype(dtype)):
        raise ValueError(
            f"the sgs surrogate has v_threshold={float(own):g} but its neuron's threshold is "
            f"v_threshold={float(theirs):g}; SGS takes the neuron's threshold: drop v_threshold "
            "from the sgs spec, or make the two equal.")
  return sg.replace(v_threshold=neuron)


def get(name: str, **params: Any) -> AnySurrogate:
  """Builds a surrogate from a config string, e.g. ``get("atan", alpha=2.0)``.

  ``get("sgs", base="rectangle", delta=0.5, alpha=1.0)`` builds an SGS wrapper;
  parameters other than ``base``, ``delta`` and ``v_threshold`` go to the base.
  Without ``v_threshold`` the wrapper takes its neuron's threshold.

  Raises:
    ValueError: unknown name or parameter, or a non-positive width.
  """
  if name == "sgs":
    params = dict(params)
    base_name = params.pop("base", "rectangle")
    delta = params.pop("delta", 0.5)
    v_threshold = params.pop("v_threshold", None)
    return sgs(get(base_name, **params), delta=delta, v_threshold=v_threshold)
  if name not in KINDS:
    near = difflib.get_close_matches(name, NAMES, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise ValueError(f"unknown surrogate {name!r}; {hint}allowed: {', '.join(NAMES)}.")
  unknown = set(params) - set(DEFAULTS[name])
  if unknown:
    raise ValueError(
        f"surrogate {name!r} takes parameters {sorted(DEFAULTS[name])}, "
        f"not {sorted(unknown)}.")
  return _make(name, **{**DEFAULTS[name], **params})


def parse(spec: str) -> AnySurrogate:
  """Builds a surrogate from a config string: ``"atan"``, ``"dspike(b=3, r=0.5)"``,
  ``"sgs(base=rectangle, delta=0.5, alpha=1)"``.

  Raises:
    ValueError: malformed text, or anything :func:`get` rejects.
  """
  text = spec.strip()
  name, _, rest = text.partition("(")
  name = name.strip()
  params: dict[str, Any] = {}
  if rest:
    if not rest.endswith(")"):
      raise ValueError(f"malformed surrogate spec {spec!r}; write e.g. 'atan(alpha=2.0)'.")
    for item in filter(None, (i.strip() for i in rest[:-1].split(","))):
      key, eq, value = item.partition("=")
      if not eq:
        raise ValueError(f"malformed surrogate spec {spec!r}: {item!r} is not key=value.")
      key, value = key.strip(), value.strip()
      params[key] = value if key == "base" else _number(value, spec)
  return get(name, **params)


def _number(text: str, spec: str) -> float:
  try:
    return float(text)
  except ValueError:
    raise ValueError(f"malformed surrogate spec {spec!r}: {text!r} is not a number.") from None


#: A surrogate, its name or spec string ("atan(alpha=2.0)"), or a mapping
#: {"name": "atan", "alpha": 2.0}.
SurrogateSpec = AnySurrogate | str | Mapping[str, Any]


def as_surrogate(spec: SurrogateSpec) -> AnySurrogate:
  """Resolves a surrogate given as an object (returned unchanged), a spec string
  (:func:`parse`), or a {"name": ..., **params} mapping (:func:`get`).

  Raises:
    ValueError: anything else, a mapping without "name", or what :func:`parse`
      and :func:`get` reject.
  """
  if isinstance(spec, (Surrogate, ScaledSurrogate)):
    return spec
  if isinstance(spec, str):
    return parse(spec)
  if isinstance(spec, Mapping):
    params = dict(spec)
    if "name" not in params:
      raise ValueError(f"a surrogate mapping needs a 'name' key, got {spec!r}.")
    return get(params.pop("name"), **params)
  raise ValueError(
      f"cannot build a surrogate from {spec!r}; give a name from {NAMES}, "
      "a {'name': ..., **params} mapping, or a snnjax.surrogates object.")


def parameters(sg: AnySurrogate) -> dict[str, Array]:
  """The surrogate's adjustable scalars (for SGS: the base's plus ``delta``)."""
  if isinstance(sg, ScaledSurrogate):
    return {**sg.base.params, "delta": sg.delta}
  return dict(sg.params)


def with_parameters(sg: AnySurrogate, params: Mapping[str, Any]) -> AnySurrogate:
  """Inverse of :func:`parameters`: the same surrogate with some values replaced.

  Raises:
    ValueError: a parameter the surrogate does not have, or a concrete
      non-positive width.
  """
  unknown = set(params) - set(parameters(sg))
  if unknown:
    raise ValueError(
        f"surrogate {sg.name!r} has no parameter(s) {sorted(unknown)}; "
        f"its parameters are {sorted(parameters(sg))}.")
  params = dict(params)
  if isinstance(sg, ScaledSurrogate):
    delta = params.pop("delta", sg.delta)
    return sg.replace(base=with_parameters(sg.base, params), delta=delta)
  merged = {**sg.params, **params}
  _check_positive(sg.name, merged)
  return sg.replace(params=merged)


def support_halfwidth(sg: AnySurrogate) -> Array:
  """Half-width w of h's support in units of x (inf for non-compact surrogates), float32.

  rectangle: 1/(2 alpha); triangle: gamma; piecewise_quadratic: 1/alpha;
  dspike: r (:data:`KINDS`' ``width``). Used to measure the fraction of
  neurons inside the support.
  """
  plain = unwrap(sg)
  width = KINDS[plain.name].width
  if width is None:
    return jnp.asarray(jnp.inf, jnp.float32)
  key, to_halfwidth = width
  return jnp.asarray(to_halfwidth(plain.params[key]), jnp.float32)


def support_fraction(x: Array, sg: AnySurrogate) -> Array:
  """Fraction of x = h - v_th with |x| < w (the support half-width of ``sg``), float32 scalar.

  For a compact surrogate these are the pre-activations whose spike passes a
  non-zero gradient; for other surrogates w = inf and the fraction is 1.
  """
  inside = jnp.abs(x.astype(jnp.float32)) < support_halfwidth(sg)
  return jnp.mean(inside.astype(jnp.float32))


# ---------------------------------------------------------------------------
# The spike function.


def heaviside(x: Array) -> Array:
  """H(x) = 1[x >= 0] in x's dtype."""
  return (x >= 0).astype(x.dtype)


def _input_gradient(x: Array, g: Array, sg: AnySurrogate) -> Array:
  """The gradient that reaches x: ``g * h(x)``, times the SGS scale for a ScaledSurrogate."""
  if isinstance(sg, ScaledSurrogate):
    o = heaviside(x)
    v = x + sg.v_threshold.astype(x.dtype)
    scale = 1 + sg.delta.astype(x.dtype) * jnp.sign(g) * (v - o)
    return g * sg.base.derivative(x) * scale
  return g * sg.derivative(x)


@jax.custom_vjp
def _spike(x: Array, sg: AnySurrogate) -> Array:
  return heaviside(x)


def _spike_fwd(x, sg):
  return heaviside(x), (x, sg)


def _spike_bwd(residuals, g):
  x, sg = residuals
  return _input_gradient(x, g, sg), jax.tree.map(jnp.zeros_like, sg)


_spike.defvjp(_spike_fwd, _spike_bwd)


def spike(x: Array, sg: AnySurrogate, v_threshold: Any = None) -> Array:
  """Fires where x >= 0: forward H(x), backward ``g * h(x)`` of the surrogate.

  Args:
    x: membrane potential minus threshold, any shape, float dtype.
    sg: a :class:`Surrogate` or :class:`ScaledSurrogate`.
    v_threshold: the threshold x is measured from (voltage units). Only SGS
      uses it (v = x + v_threshold) and then needs it, here or bound in
      ``sg`` (:func:`with_threshold`); the neurons pass their own.

  Returns:
    Spikes in {0, 1} with x's shape and dtype.

  Raises:
    ValueError: an SGS surrogate with no threshold, or one that disagrees
      with ``v_threshold``.
  """
  if not isinstance(sg, (Surrogate, ScaledSurrogate)):
    raise TypeError(f"spike needs a surrogate from snnjax.surrogates, got {type(sg).__name__}.")
  if isinstance(sg, ScaledSurrogate):
    if v_threshold is not None:
      sg = with_threshold(sg, v_threshold)
    if sg.v_threshold is None:
      raise ValueError("an sgs surrogate needs the neuron's threshold: use it in a neuron "
                       "(snnjax.neurons / snnjax.layers) or call spike(x, sg, v_threshold=...).")
  return _spike(x, sg)
