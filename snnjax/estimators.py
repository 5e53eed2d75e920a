"""Gradient estimators around the surrogates: schedules, chi and width control, gradient probes.

Three tools for people who study surrogate gradients, all pure functions of
arrays (jit-friendly, never recompiling when a value changes):

1. Schedules of any surrogate parameter over training, among them the gradual
   surrogate gradient (GSG) of "Gradual Surrogate Gradient Learning in Deep
   Spiking Neural Networks" (Chen et al., ICASSP 2022):

       beta(e) = exp(log beta_min + (log beta_max - log beta_min) * e / E),  a = max(1/beta, 1)

   for the ``gsg_tanh`` surrogate h(x) = a beta (1 - tanh^2(beta x)), e the
   epoch (0-based) and E the number of training epochs.

2. chi, from "Efficient Surrogate Gradients for Training Spiking Neural
   Networks" (ICLR 2023 submission): the fraction of a layer's parameters that
   receive a non-zero gradient. :func:`chi_per_layer` measures it for every
   kernel (for logging). The paper's width controller is not public;
   snnjax's choice is the multiplicative rule of :func:`next_halfwidth`, driven
   per neuron layer by the layer's *support fraction* f: the fraction of its
   pre-activations x = h - v_th (over time, batch and neurons) with
   |x| < w, the surrogate's support half-width. Those are exactly the
   pre-activations that pass a gradient, so f is the per-layer chi signal snnjax
   controls; kernel chi is only logged, because a conv kernel entry sees many
   positions and its chi saturates at 1 long before the neurons' does.

3. Gradient-error probes (:func:`gradient_probe`): per layer, the surrogate
   gradient's directional derivatives against central finite differences of
   the true (spiking) loss along random directions.

The training step calls one function, built once from the config:

    update = make_surrogate_update(config.estimator, config.model.surrogate,
                                   steps_per_epoch, total_steps)
    fractions = support_fractions(updates["intermediates"])   # {"sn1": f, ...}
    new_surrogate = update(state.surrogate, new_step, fractions)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from snnjax import layers, surrogates

Array = jax.Array

#: Name of the per-layer support fraction the neuron modules sow into "intermediates".
SUPPORT_FRACTION = layers.SUPPORT_FRACTION
support_fraction = surrogates.support_fraction

#: GSG defaults, snnjax's choice (the paper does not publish them). For
#: h(x) = a beta sech^2(beta x) the half width at half maximum is 0.88/beta.
#: beta_min = 0.5: a = 2, peak 1 (the peak of atan(2) and sigmoid(4)), half
#: width 1.76, wider than any standard surrogate, so nearly every membrane of a
#: BN-normalised layer (threshold 1) receives gradient early on. beta_max = 5:
#: a = 1, half width 0.18, 2-2.5x sharper than atan(2) / sigmoid(4) (half
#: widths 0.32 / 0.44), close to the step while a useful share of neurons still
#: passes gradient. The range spans one decade.
GSG_BETA_MIN = 0.5
GSG_BETA_MAX = 5.0

UNITS = ("epoch", "step")


# ---------------------------------------------------------------------------
# Schedules. A schedule maps the training progress p in [0, 1] to a value.


def constant(start: Any, end: Any, p: Array) -> Array:
  """start, whatever p (``end`` is ignored)."""
  del end
  return jnp.broadcast_to(jnp.asarray(start, jnp.float32), jnp.shape(p))


def linear(start: Any, end: Any, p: Array) -> Array:
  """start + (end - start) p."""
  return start + (end - start) * p


def cosine(start: Any, end: Any, p: Array) -> Array:
  """end + (start - end) (1 + cos(pi p)) / 2: start at p=0, end at p=1, slow at both ends."""
  return end + (start - end) * 0.5 * (1 + jnp.cos(math.pi * p))


def exponential(start: Any, end: Any, p: Array) -> Array:
  """Log-linear: exp(log start + (log end - log start) p); start, end > 0."""
  return jnp.exp(math.log(start) + (math.log(end) - math.log(start)) * p)


#: Schedule kinds. "gsg" is the log-linear schedule of GSG, for gsg_tanh's beta.
SCHEDULES: dict[str, Callable[[Any, Any, Array], Array]] = {
    "gsg": exponential,
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "exponential": exponential,
}


def _check_lengths(unit: str, steps_per_epoch: int, total_steps: int) -> None:
  if unit not in UNITS:
    raise ValueError(f"unknown schedule unit {unit!r}; allowed: {', '.join(UNITS)}.")
  if steps_per_epoch < 1 or total_steps < 1:
    raise ValueError(f"steps_per_epoch={steps_per_epoch} and total_steps={total_steps} "
                     "must be >= 1.")


def progress(step: Array, steps_per_epoch: int, total_steps: int, unit: str = "step") -> Array:
  """Training progress p in [0, 1] after ``step`` optimiser steps, float32.

  unit="step": p = step / total_steps. unit="epoch": p = e / E with
  e = floor(step / steps_per_epoch) the current epoch (0-based) and
  E = total_steps / steps_per_epoch the number of epochs, so the value changes
  only at epoch boundaries. p is clipped to [0, 1] (runs longer than the
  schedule keep the end value).
  """
  _check_lengths(unit, steps_per_epoch, total_steps)
  step = jnp.asarray(step).astype(jnp.float32)
  if unit == "epoch":
    p = jnp.floor(step / steps_per_epoch) * (steps_per_epoch / total_steps)
  else:
    p = step / total_steps
  return jnp.clip(p, 0.0, 1.0)


def make_schedule(kind: str, start: float, end: float, *, unit: str, steps_per_epoch: int,
                  total_steps: int) -> Callable[[Array], Array]:
  """step (int, may be traced) -> float32 value of the schedule ``kind`` from start to end."""
  if kind not in SCHEDULES:
    raise ValueError(f"unknown schedule kind {kind!r}; allowed: {', '.join(SCHEDULES)}.")
  _check_lengths(unit, steps_per_epoch, total_steps)
  fn = SCHEDULES[kind]
  return lambda step: jnp.asarray(
      fn(start, end, progress(step, steps_per_epoch, total_steps, unit)), jnp.float32)


def gsg_beta(epoch: Any, num_epochs: float, beta_min: float = GSG_BETA_MIN,
             beta_max: float = GSG_BETA_MAX) -> Array:
  """GSG's beta at ``epoch`` (0-based) of ``num_epochs``: log-linear from beta_min to beta_max.

  beta(e) = exp(log beta_min + (log beta_max - log beta_min) e / E), e / E clipped to [0, 1].
  With a 0-based epoch the last epoch trains at e = E - 1 (snnjax's reading of
  the formula); beta_max is reached at e = E.
  """
  p = jnp.clip(jnp.asarray(epoch, jnp.float32) / num_epochs, 0.0, 1.0)
  return exponential(beta_min, beta_max, p).astype(jnp.float32)


def gsg_amplitude(beta: Any) -> Array:
  """GSG's a = max(1/beta, 1): keeps the peak a beta at 1 while beta < 1."""
  return jnp.maximum(1 / jnp.asarray(beta, jnp.float32), 1.0)


# ---------------------------------------------------------------------------
# Support width of compact surrogates (see surrogates.support_halfwidth).

def width_parameter(sg: surrogates.AnySurrogate) -> str:
  """The parameter that sets the support half-width of a compact surrogate (SGS: of its base).

  Raises:
    ValueError: ``sg`` has no compact support.
  """
  width = surrogates.KINDS[surrogates.unwrap(sg).name].width
  if width is None:
    raise ValueError(f"surrogate {sg.name!r} has no compact support, so it has no support width; "
                     f"use one of {', '.join(surrogates.COMPACT_SUPPORT)}.")
  return width[0]


def halfwidth_to_params(sg: surrogates.AnySurrogate, halfwidth: Any) -> dict[str, Array]:
  """The width parameter that gives support half-width ``halfwidth`` (units of x), float32.

  rectangle alpha = 1/(2w); triangle gamma = w; piecewise_quadratic alpha = 1/w;
  dspike r = w. Each keeps the area under h at 1. Inverse of
  :func:`params_to_halfwidth`.
  """
  key = width_parameter(sg)
  to_value = surrogates.KINDS[surrogates.unwrap(sg).name].width[1]  # its own inverse
  return {key: jnp.asarray(to_value(jnp.asarray(halfwidth, jnp.float32)), jnp.float32)}


def params_to_halfwidth(sg: surrogates.AnySurrogate, params: Mapping[str, Any]) -> Array:
  """Support half-width w of ``sg`` with ``params`` (a layer's surrogate variables), float32."""
  width_parameter(sg)
  return surrogates.support_halfwidth(surrogates.with_parameters(sg, params))


def support_fractions(collection: Mapping[str, Any]) -> dict[str, Array]:
  """{neuron layer path: support fraction} from the ``"intermediates"`` collection.

  Reads the ``"support_fraction"`` values the neuron modules sow (compact
  surrogates only), as :func:`snnjax.energy.firing_rates` reads firing rates.
  Paths join module names with "/", e.g. ``"layer1/block0/sn1"``.

  Args:
    collection: what ``model.apply(..., mutable=["intermediates"])`` returns
      (a mapping with an ``"intermediates"`` key) or that collection itself.
  """
  return layers.sown_means(collection, SUPPORT_FRACTION)


# ---------------------------------------------------------------------------
# chi and the width controller.


def chi_per_layer(grads: Any) -> dict[str, Array]:
  """{layer path: fraction of that layer's kernel entries with a non-zero gradient}, float32.

  chi of "Efficient Surrogate Gradients for Training Spiking Neural Networks"
  per ``kernel`` leaf (conv and dense layers). Keys are the path of the layer
  that owns the kernel ("layer1/block0/conv1"), as in the firing-rate metrics.
  """
  return {"/".join(path[:-1]): jnp.mean((g != 0).astype(jnp.float32))
          for path, g in sorted(traverse_util.flatten_dict(grads).items())
          if path[-1] == "kernel"}


def next_halfwidth(halfwidth: Array, fraction: Array, *, target: float, rate: float,
                   min_halfwidth: float, max_halfwidth: float, max_change: float,
                   tolerance: float = 0.0) -> Array:
  """One update of a layer's support half-width w from its support fraction f (snnjax's rule).

      e = target - f,  or 0 when |target - f| <= tolerance (dead band)
      w <- clip(w * clip(exp(rate * e), 1/max_change, max_change), min_halfwidth, max_halfwidth)

  Too few neurons inside the support (f < target) widens it, too many
  narrows it. Properties (for a fixed batch and parameters, where f = F(w)
  is non-decreasing in w because the surrogate never changes the forward
  pass): every w stays in [min_halfwidth, max_halfwidth]; each update
  changes w by at most a factor max_change; in u = log w the update is
  u + clip(rate (target - F(e^u))), which is non-decreasing in u whenever
  rate * dF/du <= 1, so the widths then move monotonically toward the fixed
  point and never overshoot it; the dead band stops the last
  sub-sample-sized dithering of an empirical F. For x ~ N(m, s),
  dF/du = (w/s) (phi((w - m)/s) + phi((w + m)/s)): at most 0.49 for m = 0,
  about 0.4 |m|/s near w = |m| when |m| >> s. So rate = 1 is monotone unless
  the pre-activations crowd at more than ~2.5 standard deviations from the
  threshold; beyond that the widths can overshoot, with every step still
  bounded by max_change and the bounds.
  """
  error = target - fraction
  error = jnp.where(jnp.abs(error) <= tolerance, 0.0, error)
  factor = jnp.clip(jnp.exp(rate * error), 1 / max_change, max_change)
  return jnp.clip(halfwidth * factor, min_halfwidth, max_halfwidth).astype(jnp.float32)


# ---------------------------------------------------------------------------
# The config.estimator block.


def default_config() -> ml_collections.ConfigDict:
  """The ``config.estimator`` block; everything off by default.

      schedule.param        surrogate parameter to schedule ("" = off), e.g. "beta", "alpha".
      schedule.kind         "gsg" | "constant" | "linear" | "cosine" | "exponential";
                            "gsg" is "exponential" for gsg_tanh's beta.
      schedule.start, .end  value at the start and at the end of training.
      schedule.unit         "epoch" (value changes at epoch boundaries) | "step".
      chi.enabled           control every neuron layer's support width (compact surrogates).
      chi.log               log kernel chi of every layer ("chi/<layer>") without the
                            controller (always logged with it).
      chi.target            support fraction each layer is steered to, in (0, 1).
      chi.rate              gain of the multiplicative rule (see next_halfwidth).
      chi.min_halfwidth, chi.max_halfwidth   bounds of the half-width w (units of x = h - v_th).
      chi.max_change        largest factor of one update (> 1).
      chi.every_steps       update every this many optimiser steps.
      chi.tolerance         dead band: no change while |target - f| <= tolerance.

  snnjax's defaults: the GSG range 0.5 -> 5 (see GSG_BETA_MIN); chi target 0.3,
  about the fraction the default rectangle (w = 0.5) has on BN-normalised
  currents with threshold 1 (P(0.5 < h < 1.5) = 0.24 for h ~ N(0, 1));
  rate 1 (monotone wherever dF/dlog w <= 1, see next_halfwidth); widths in [0.1, 2];
  at most 10% change per update, every 10 steps; dead band 0.01.
  """
  c = ml_collections.ConfigDict()
  c.schedule = ml_collections.ConfigDict(dict(
      param="", kind="gsg", start=GSG_BETA_MIN, end=GSG_BETA_MAX, unit="epoch"))
  c.chi = ml_collections.ConfigDict(dict(
      enabled=False, log=False, target=0.3, rate=1.0, min_halfwidth=0.1, max_halfwidth=2.0, max_change=1.1,
      every_steps=10, tolerance=0.01))
  return c


def _flat_keys(tree: Mapping, prefix: str = "") -> set[str]:
  keys = set()
  for k, v in tree.items():
    keys |= _flat_keys(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {prefix + k}
  return keys


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(message)


def validate_config(c: Mapping, surrogate: surrogates.SurrogateSpec) -> None:
  """Raises ValueError naming the first bad value of a ``config.estimator`` block.

  Args:
    c: the block (ConfigDict or dict).
    surrogate: the model's surrogate (spec string, mapping or object): the
      scheduled parameter must be one of its parameters, chi needs compact support.
  """
  sg = surrogates.as_surrogate(surrogate)
  c = c.to_dict() if hasattr(c, "to_dict") else dict(c)
  known = _flat_keys(default_config().to_dict())
  unknown = sorted(_flat_keys(c) - known)
  _check(not unknown, f"unknown config.estimator keys {unknown}; allowed: {sorted(known)}.")
  missing = sorted(known - _flat_keys(c))
  _check(not missing,
         f"config.estimator lacks keys {missing}; start from snnjax.estimators.default_config().")
  s, chi = c["schedule"], c["chi"]
  params = sorted(surrogates.parameters(sg))
  if s["param"]:
    _check(s["param"] in params,
           f"config.estimator.schedule.param={s['param']!r} is not a parameter of the surrogate "
           f"{sg.name!r}; its parameters are {params} ('' = no schedule).")
    _check(s["kind"] in SCHEDULES, f"config.estimator.schedule.kind={s['kind']!r} unknown; "
           f"allowed: {', '.join(SCHEDULES)}.")
    _check(s["unit"] in UNITS, f"config.estimator.schedule.unit={s['unit']!r} unknown; allowed: "
           f"{', '.join(UNITS)}.")
    _check(s["kind"] != "gsg" or (surrogates.unwrap(sg).name == "gsg_tanh" and s["param"] == "beta"),
           f"config.estimator.schedule.kind='gsg' anneals gsg_tanh's beta, but the surrogate is "
           f"{sg.name!r} and schedule.param={s['param']!r}; set model.surrogate='gsg_tanh' and "
           f"schedule.param='beta', or use kind 'exponential'.")
    nonnegative = s["param"] == "delta"  # SGS's delta may be 0; widths and slopes may not
    for key in ("start", "end"):
      value = s[key]
      ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (value >= 0 if nonnegative else value > 0))
      _check(ok, f"config.estimator.schedule.{key}={value!r} must be a number "
             f"{'>= 0' if nonnegative else '> 0'} for parameter {s['param']!r}.")
    _check(s["kind"] not in ("gsg", "exponential") or (s["start"] > 0 and s["end"] > 0),
           f"config.estimator.schedule.kind={s['kind']!r} is log-linear: start={s['start']} and "
           f"end={s['end']} must be > 0.")
  if not chi["enabled"]:
    return
  _check(surrogates.unwrap(sg).name in surrogates.COMPACT_SUPPORT,
         f"config.estimator.chi.enabled=True needs a surrogate with compact support "
         f"({', '.join(surrogates.COMPACT_SUPPORT)}), got {sg.name!r}: outside a compact support "
         "every pre-activation passes gradient, so there is no width to control.")
  _check(s["param"] != width_parameter(sg),
         f"config.estimator.schedule.param={s['param']!r} is the width the chi controller sets "
         f"for {sg.name!r}; schedule another parameter or disable one of them.")
  _check(0 < chi["target"] < 1, f"config.estimator.chi.target={chi['target']!r} must be in (0, 1).")
  _check(chi["rate"] > 0, f"config.estimator.chi.rate={chi['rate']!r} must be > 0.")
  _check(0 < chi["min_halfwidth"] <= chi["max_halfwidth"],
         f"config.estimator.chi.min_halfwidth={chi['min_halfwidth']!r} and "
         f"max_halfwidth={chi['max_halfwidth']!r} must satisfy 0 < min <= max.")
  _check(chi["max_change"] > 1,
         f"config.estimator.chi.max_change={chi['max_change']!r} must be > 1 (largest factor "
         "of one update).")
  _check(isinstance(chi["every_steps"], int) and not isinstance(chi["every_steps"], bool)
         and chi["every_steps"] >= 1,
         f"config.estimator.chi.every_steps={chi['every_steps']!r} must be an int >= 1.")
  _check(0 <= chi["tolerance"] < 1,
         f"config.estimator.chi.tolerance={chi['tolerance']!r} must be in [0, 1).")


def _layers_of(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """{"a/b/sn1": {param: value}} from the nested "surrogate" collection."""
  grouped: dict[str, dict[str, Any]] = {}
  for path, value in traverse_util.flatten_dict(dict(state)).items():
    grouped.setdefault("/".join(path[:-1]), {})[path[-1]] = value
  return grouped


def _nest(grouped: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
  flat = {(*layer.split("/"), k): v for layer, ps in grouped.items() for k, v in ps.items()}
  return traverse_util.unflatten_dict(flat)


Update = Callable[[Any, Array, Mapping[str, Array]], Any]


def make_surrogate_update(estimator_config: Mapping, surrogate: surrogates.SurrogateSpec,
                          steps_per_epoch: int, total_steps: int) -> Update:
  """The function the train step calls after each step: ``update(state, step, fractions)``.

  Args:
    estimator_config: the ``config.estimator`` block (validated here).
    surrogate: the model's surrogate (``config.model.surrogate``).
    steps_per_epoch, total_steps: static lengths of the schedule (total_steps
      spans the whole training, as the learning-rate schedule does).

  Returns:
    ``update(surrogate_state, step, support_fractions) -> new surrogate_state``,
    pure and jit-friendly. ``surrogate_state`` is the "surrogate" collection
    ({layer path...: {param: float32 scalar}}), ``step`` the int32 step count
    after the optimiser update, ``support_fractions`` {layer path: float32}
    from :func:`support_fractions` ({} before the first step). The schedule sets
    ``schedule.param`` of every layer to its value at ``step``; the chi
    controller updates the width of every layer that has a support fraction
    (when step % every_steps == 0). The result has the input's structure and
    strong float32 leaves, so the train step never recompiles. With nothing
    enabled it is the identity. ``update(state, 0, {})`` gives the schedule's
    starting values (apply it to the initial state).
  """
  validate_config(estimator_config, surrogate)
  sg = surrogates.as_surrogate(surrogate)
  s, chi = estimator_config["schedule"], estimator_config["chi"]
  schedule = (make_schedule(s["kind"], s["start"], s["end"], unit=s["unit"],
                            steps_per_epoch=steps_per_epoch, total_steps=total_steps)
              if s["param"] else None)
  if schedule is None and not chi["enabled"]:
    return lambda surrogate_state, step, fractions: surrogate_state
  controller = dict(target=chi["target"], rate=chi["rate"], min_halfwidth=chi["min_halfwidth"],
                    max_halfwidth=chi["max_halfwidth"], max_change=chi["max_change"],
                    tolerance=chi["tolerance"])

  def update(surrogate_state, step, fractions):
    step = jnp.asarray(step)
    new_layers = {}
    for layer, params in _layers_of(surrogate_state).items():
      new = dict(params)
      if schedule is not None and s["param"] in new:
        new[s["param"]] = schedule(step)
      if chi["enabled"] and layer in fractions:
        w = params_to_halfwidth(sg, params)
        w_next = next_halfwidth(w, jnp.asarray(fractions[layer], jnp.float32), **controller)
        w_next = jnp.where(step % chi["every_steps"] == 0, w_next, w)
        new.update(halfwidth_to_params(sg, w_next))
      new_layers[layer] = {k: jnp.asarray(v, jnp.float32) for k, v in new.items()}
    return _nest(new_layers)

  return update


def logs_chi(estimator_config: Mapping) -> bool:
  """True if kernel chi is logged: asked for (chi.log) or steered (chi.enabled)."""
  return bool(estimator_config["chi"]["enabled"] or estimator_config["chi"]["log"])


def estimator_metrics(surrogate_state: Any, surrogate: surrogates.SurrogateSpec,
                      estimator_config: Mapping, grads: Any = None,
                      fractions: Mapping[str, Array] | None = None) -> dict[str, Array]:
  """Scalars to log, those that can change: scheduled or steered surrogate parameters, their
  half-widths, kernel chi when :func:`logs_chi`, support fractions.

  Keys: "surrogate/<layer>/<param>" for the scheduled parameter and (chi
  controller) the width parameter; "halfwidth/<layer>" (compact surrogates
  whose width changes); "chi/<layer>" (with ``grads`` and :func:`logs_chi`);
  "support_fraction/<layer>" (whatever ``fractions`` holds). Constants are left
  out: a surrogate parameter nothing changes is in config.json.
  """
  sg = surrogates.as_surrogate(surrogate)
  schedule, chi = estimator_config["schedule"], estimator_config["chi"]
  compact = surrogates.unwrap(sg).name in surrogates.COMPACT_SUPPORT
  changing = {schedule["param"]} - {""}
  if chi["enabled"]:
    changing.add(width_parameter(sg))
  width_changes = compact and (chi["enabled"] or schedule["param"] == width_parameter(sg))
  metrics = {}
  for layer, params in _layers_of(surrogate_state).items():
    metrics.update({f"surrogate/{layer}/{k}": v for k, v in params.items() if k in changing})
    if width_changes:
      metrics[f"halfwidth/{layer}"] = params_to_halfwidth(sg, params)
  if grads is not None and logs_chi(estimator_config):
    metrics.update({f"chi/{k}": v for k, v in chi_per_layer(grads).items()})
  metrics.update({f"support_fraction/{k}": v for k, v in (fractions or {}).items()})
  return metrics


# ---------------------------------------------------------------------------
# Gradient-error probes.


@dataclasses.dataclass(frozen=True)
class LayerProbe:
  """Surrogate gradient vs finite differences of the true loss, for one layer's kernel.

  Attributes:
    layer: path of the layer that owns the kernel.
    size: kernel entries.
    step_size: eps used, in parameter units (a direction has norm 1).
    surrogate: [K] directional derivatives g . d_i of the surrogate gradient.
    finite_difference: [K] (L(p + eps d_i) - L(p - eps d_i)) / (2 eps).
    cosine: cosine similarity of the two [K] vectors (nan if one is 0).
    cosine_ci: 95% (``confidence``) percentile-bootstrap interval of ``cosine``.
    relative_error: ||surrogate - finite_difference|| / ||finite_difference||.
    relative_error_ci: its bootstrap interval.
    references: {name: (cosine, interval)} of each reference gradient (e.g. an
      SML head's loss) against the same finite differences; nan where that
      loss does not depend on the layer.
  """

  layer: str
  size: int
  step_size: float
  surrogate: np.ndarray
  finite_difference: np.ndarray
  cosine: float
  cosine_ci: tuple[float, float]
  relative_error: float
  relative_error_ci: tuple[float, float]
  references: Mapping[str, tuple[float, tuple[float, float]]] = dataclasses.field(
      default_factory=dict)


def _natural_key(text: str) -> list:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def kernel_layers(params: Any) -> list[str]:
  """Paths of every layer with a ``kernel``, in natural order ("conv2" before "conv10")."""
  return sorted(chi_per_layer(params), key=_natural_key)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Cosine along the last axis; nan where either vector is 0."""
  norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(norm > 0, np.sum(a * b, axis=-1) / norm, np.nan)


def _relative_error(s: np.ndarray, f: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(f, axis=-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(norm > 0, np.linalg.norm(s - f, axis=-1) / norm, np.nan)


def _bootstrap(stat: Callable[[np.ndarray, np.ndarray], np.ndarray], s: np.ndarray,
               f: np.ndarray, index: np.ndarray, confidence: float) -> tuple[float, float]:
  """Percentile-bootstrap interval of stat(s, f), resampling directions with ``index`` [R, K]."""
  values = stat(s[index], f[index])
  values = values[np.isfinite(values)]
  if not values.size:
    return (math.nan, math.nan)
  lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
  return (float(lo), float(hi))


def _with_leaf(params: Any, path: tuple, value: Array) -> Any:
  flat = traverse_util.flatten_dict(dict(params))
  flat[path] = value
  return traverse_util.unflatten_dict(flat)


@jax.jit
def _direction(key: Array, w: Array, eps: Array, grads: tuple[Array, ...]) -> tuple:
  """A unit Gaussian direction d in w's space: (w + eps d, w - eps d, (g . d for g in grads))."""
  d = jax.random.normal(key, w.shape, jnp.float32)
  d = (d / jnp.linalg.norm(d)).astype(w.dtype)
  return w + eps * d, w - eps * d, tuple(jnp.vdot(g, d) for g in grads)


def gradient_probe(loss_fn: Callable[[Any], Array], params: Any, key: Array,
                   num_directions: int = 32, step_size: float = 0.05, *,
                   layers_to_probe: Sequence[str] | None = None, relative_step: bool = True,
                   reference_loss_fns: Mapping[str, Callable[[Any], Array]] | None = None,
                   confidence: float = 0.95, num_bootstrap: int = 2000) -> list[LayerProbe]:
  """Per layer, how well the surrogate gradient predicts the true loss's change.

  For each layer's kernel W (the other parameters fixed) and K random unit
  directions d_i in W's space (Gaussian, normalised to norm 1), compares the
  surrogate directional derivative g . d_i, g = jax.grad(loss_fn) (the
  surrogate backward pass), with the central finite difference of the true
  loss, exactly what ``loss_fn`` computes with its spiking forward pass:

      fd_i = (L(W + eps d_i) - L(W - eps d_i)) / (2 eps)

  The spiking loss is piecewise constant in W, so eps must be large enough
  for many neurons to cross their thresholds; fd then measures the slope of
  the loss smoothed over that scale, which is what a useful gradient should
  predict. With ``relative_step`` (default) eps = step_size * ||W||, so every
  layer is perturbed by the same relative amount (BatchNorm makes the loss
  invariant to the kernel's scale); else eps = step_size.

  Reported per layer: the cosine similarity between the [K] vectors (g . d_i)
  and (fd_i) (for isotropic directions it estimates the cosine between g and
  the smoothed true gradient), the relative error ||g.d - fd|| / ||fd||, and
  95% percentile-bootstrap intervals of both over the K directions
  (``num_bootstrap`` resamples; directions are i.i.d., so resampling them is
  valid). Each reference loss (e.g. an SML head's loss) gets the cosine of its
  own gradient's directional derivatives against the same fd_i.

  Args:
    loss_fn: params -> scalar loss; deterministic (a fixed batch, BN mode and rngs).
    params: the parameter tree.
    key: PRNG key of the directions and the bootstrap.
    num_directions: K >= 2.
    step_size: eps, relative to ||W|| when ``relative_step``.
    layers_to_probe: layer paths (owners of a ``kernel``) in depth order;
      default every kernel in natural path order.
    reference_loss_fns: {name: params -> scalar} compared by cosine.
    confidence: level of the intervals.

  Returns:
    One :class:`LayerProbe` per layer, in the given order.
  """
  if num_directions < 2:
    raise ValueError(f"num_directions={num_directions} must be >= 2 for a confidence interval.")
  if not step_size > 0:
    raise ValueError(f"step_size={step_size} must be > 0.")
  flat_params = traverse_util.flatten_dict(dict(params))
  names = list(layers_to_probe) if layers_to_probe is not None else kernel_layers(params)
  paths = [(*name.split("/"), "kernel") for name in names]
  missing = [n for n, p in zip(names, paths) if p not in flat_params]
  if missing:
    raise ValueError(f"layers {missing} have no kernel; layers with one: {kernel_layers(params)}.")
  loss = jax.jit(loss_fn)
  grads = {"": jax.jit(jax.grad(loss_fn))(params)}
  for name, fn in (reference_loss_fns or {}).items():
    grads[name] = jax.jit(jax.grad(fn))(params)
  flat_grads = {n: traverse_util.flatten_dict(dict(g)) for n, g in grads.items()}
  keys = jax.random.split(key, len(names) + 1)
  # Resampled direction indices [R, K], drawn on the host from the key's bits.
  index = np.random.default_rng(np.asarray(jax.random.key_data(keys[-1]))).integers(
      0, num_directions, (num_bootstrap, num_directions))
  results = []
  for layer_index, (name, path) in enumerate(zip(names, paths)):
    w = flat_params[path]
    eps = float(step_size * np.linalg.norm(np.asarray(w))) if relative_step else float(step_size)
    eps = eps if eps > 0 else float(step_size)
    layer_grads = tuple(g[path] for g in flat_grads.values())
    fd, derivs = [], []
    for k in jax.random.split(keys[layer_index], num_directions):
      plus_w, minus_w, dots = _direction(k, w, jnp.asarray(eps, w.dtype), layer_grads)
      plus = loss(_with_leaf(params, path, plus_w))
      minus = loss(_with_leaf(params, path, minus_w))
      fd.append(float((plus - minus) / (2 * eps)))
      derivs.append([float(v) for v in dots])
    f = np.asarray(fd, np.float64)
    derivs = dict(zip(flat_grads, np.asarray(derivs, np.float64).T))
    s = derivs.pop("")
    references = {n: (float(_cosine(r, f)), _bootstrap(_cosine, r, f, index, confidence))
                  for n, r in derivs.items()}
    results.append(LayerProbe(
        layer=name, size=int(w.size), step_size=eps, surrogate=s, finite_difference=f,
        cosine=float(_cosine(s, f)), cosine_ci=_bootstrap(_cosine, s, f, index, confidence),
        relative_error=float(_relative_error(s, f)),
        relative_error_ci=_bootstrap(_relative_error, s, f, index, confidence),
        references=references))
  return results
