"""The ``config.estimator`` block: surrogate schedules and chi width control, from a config.

Defaults and validation of the block, and :func:`make_estimator`, which builds
from it the pair the training step calls: ``update`` (schedules of
:mod:`snnjax.schedules`, the width controller of :mod:`snnjax.chi`) and
``metrics`` (what of the surrogate can change, for the logs).

    sg = surrogates.parse(config.model.surrogate)      # once, in config validation
    validate_config(config.estimator, sg)
    estimator = make_estimator(config.estimator, sg, steps_per_epoch, total_steps)
    fractions = chi.support_fractions(updates["intermediates"])   # {"sn1": f, ...}
    new_surrogate = estimator.update(state.surrogate, new_step, fractions)
    logged = estimator.metrics(state.surrogate, grads, fractions)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from snnjax import chi, schedules, surrogates, validation

Array = jax.Array

#: The GSG range of the default schedule (see :data:`snnjax.schedules.GSG_BETA_MIN`).
GSG_BETA_MIN = schedules.GSG_BETA_MIN
GSG_BETA_MAX = schedules.GSG_BETA_MAX


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
      chi.rate              gain of the multiplicative rule (see snnjax.chi.next_halfwidth).
      chi.min_halfwidth, chi.max_halfwidth   bounds of the half-width w (units of x = h - v_th).
      chi.max_change        largest factor of one update (> 1).
      chi.every_steps       update every this many optimiser steps.
      chi.tolerance         dead band: no change while |target - f| <= tolerance.

  snnjax's defaults: the GSG range 0.5 -> 5 (see snnjax.schedules.GSG_BETA_MIN); chi target 0.3,
  about the fraction the default rectangle (w = 0.5) has on BN-normalised
  currents with threshold 1 (P(0.5 < h < 1.5) = 0.24 for h ~ N(0, 1));
  rate 1 (monotone wherever dF/dlog w <= 1, see snnjax.chi.next_halfwidth); widths in [0.1, 2];
  at most 10% change per update, every 10 steps; dead band 0.01.
  """
  c = ml_collections.ConfigDict()
  c.schedule = ml_collections.ConfigDict(dict(
      param="", kind="gsg", start=GSG_BETA_MIN, end=GSG_BETA_MAX, unit="epoch"))
  c.chi = ml_collections.ConfigDict(dict(
      enabled=False, log=False, target=0.3, rate=1.0, min_halfwidth=0.1, max_halfwidth=2.0,
      max_change=1.1, every_steps=10, tolerance=0.01))
  return c


_check = validation.check


def validate_config(block: Mapping, surrogate: surrogates.SurrogateSpec) -> None:
  """Raises ValueError naming the first bad value of a ``config.estimator`` block.

  Args:
    block: the block (ConfigDict or dict).
    surrogate: the model's surrogate (spec string, mapping or object): the
      scheduled parameter must be one of its parameters, chi needs compact support.
  """
  sg = surrogates.as_surrogate(surrogate)
  c = block.to_dict() if hasattr(block, "to_dict") else dict(block)
  validation.check_keys("estimator", c, default_config().to_dict(),
                        "snnjax.estimators.default_config()")
  schedule, control = c["schedule"], c["chi"]
  params = sorted(surrogates.parameters(sg))
  if schedule["param"]:
    _check(schedule["param"] in params,
           f"config.estimator.schedule.param={schedule['param']!r} is not a parameter of the "
           f"surrogate {sg.name!r}; its parameters are {params} ('' = no schedule).")
    validation.check_choice("estimator.schedule.kind", schedule["kind"], schedules.SCHEDULES)
    validation.check_choice("estimator.schedule.unit", schedule["unit"], schedules.UNITS)
    gsg_beta = surrogates.unwrap(sg).name == "gsg_tanh" and schedule["param"] == "beta"
    _check(schedule["kind"] != "gsg" or gsg_beta,
           f"config.estimator.schedule.kind='gsg' anneals gsg_tanh's beta, but the surrogate is "
           f"{sg.name!r} and schedule.param={schedule['param']!r}; set "
           "model.surrogate='gsg_tanh' and schedule.param='beta', or use kind 'exponential'.")
    nonnegative = schedule["param"] == "delta"  # SGS's delta may be 0; widths and slopes may not
    for key in ("start", "end"):
      value = schedule[key]
      ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (value >= 0 if nonnegative else value > 0))
      _check(ok, f"config.estimator.schedule.{key}={value!r} must be a number "
             f"{'>= 0' if nonnegative else '> 0'} for parameter {schedule['param']!r}.")
    positive_ends = schedule["start"] > 0 and schedule["end"] > 0
    _check(schedule["kind"] not in ("gsg", "exponential") or positive_ends,
           f"config.estimator.schedule.kind={schedule['kind']!r} is log-linear: "
           f"start={schedule['start']} and end={schedule['end']} must be > 0.")
  if not control["enabled"]:
    return
  _check(surrogates.unwrap(sg).name in surrogates.COMPACT_SUPPORT,
         f"config.estimator.chi.enabled=True needs a surrogate with compact support "
         f"({', '.join(surrogates.COMPACT_SUPPORT)}), got {sg.name!r}: outside a compact support "
         "every pre-activation passes gradient, so there is no width to control.")
  _check(schedule["param"] != chi.width_parameter(sg),
         f"config.estimator.schedule.param={schedule['param']!r} is the width the chi controller "
         f"sets for {sg.name!r}; schedule another parameter or disable one of them.")
  _check(0 < control["target"] < 1,
         f"config.estimator.chi.target={control['target']!r} must be in (0, 1).")
  _check(control["rate"] > 0, f"config.estimator.chi.rate={control['rate']!r} must be > 0.")
  _check(0 < control["min_halfwidth"] <= control["max_halfwidth"],
         f"config.estimator.chi.min_halfwidth={control['min_halfwidth']!r} and "
         f"max_halfwidth={control['max_halfwidth']!r} must satisfy 0 < min <= max.")
  _check(control["max_change"] > 1,
         f"config.estimator.chi.max_change={control['max_change']!r} must be > 1 (largest factor "
         "of one update).")
  validation.check_int("estimator.chi.every_steps", control["every_steps"], 1)
  _check(0 <= control["tolerance"] < 1,
         f"config.estimator.chi.tolerance={control['tolerance']!r} must be in [0, 1).")


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
Metrics = Callable[..., dict[str, Array]]


class Estimator(NamedTuple):
  """The surrogate's side of a train step, built by :func:`make_estimator`.

  Attributes:
    update: ``update(surrogate_state, step, support_fractions) -> new surrogate_state``.
    metrics: ``metrics(surrogate_state, grads=None, fractions=None) -> {name: scalar}``.
  """

  update: Update
  metrics: Metrics


def make_estimator(estimator_config: Mapping, surrogate: surrogates.SurrogateSpec,
                   steps_per_epoch: int, total_steps: int) -> Estimator:
  """The surrogate update and the estimator metrics of one run.

  Args:
    estimator_config: the ``config.estimator`` block, already validated
      (:func:`validate_config`; the training config's validation does it).
    surrogate: the model's surrogate: the parsed object (the training loop passes the one its
      config validation parsed), or anything :func:`snnjax.surrogates.as_surrogate` takes.
    steps_per_epoch, total_steps: static lengths of the schedule (total_steps
      spans the whole training, as the learning-rate schedule does).

  Returns:
    An :class:`Estimator`. ``update(surrogate_state, step, support_fractions)``
    is pure and jit-friendly: ``surrogate_state`` is the "surrogate" collection
    ({layer path...: {param: float32 scalar}}), ``step`` the int32 step count
    after the optimiser update, ``support_fractions`` {layer path: float32}
    from :func:`snnjax.chi.support_fractions` ({} before the first step). The
    schedule sets ``schedule.param`` of every layer to its value at ``step``; the chi
    controller updates the width of every layer that has a support fraction
    (when step % every_steps == 0). The result has the input's structure and
    strong float32 leaves, so the train step never recompiles. With nothing
    enabled it is the identity. ``update(state, 0, {})`` gives the schedule's
    starting values (apply it to the initial state). ``metrics`` is
    :func:`estimator_metrics` for this surrogate and block.
  """
  surrogate = surrogates.as_surrogate(surrogate)
  metrics = functools.partial(_bound_metrics, surrogate, estimator_config)
  s, control = estimator_config["schedule"], estimator_config["chi"]
  schedule = (schedules.make_schedule(s["kind"], s["start"], s["end"], unit=s["unit"],
                                      steps_per_epoch=steps_per_epoch, total_steps=total_steps)
              if s["param"] else None)
  if schedule is None and not control["enabled"]:
    return Estimator(lambda surrogate_state, step, fractions: surrogate_state, metrics)
  controller = {k: control[k] for k in ("target", "rate", "min_halfwidth", "max_halfwidth",
                                         "max_change", "tolerance")}

  def update(surrogate_state, step, fractions):
    step = jnp.asarray(step)
    new_layers = {}
    for layer, params in _layers_of(surrogate_state).items():
      new = dict(params)
      if schedule is not None and s["param"] in new:
        new[s["param"]] = schedule(step)
      if control["enabled"] and layer in fractions:
        w = chi.params_to_halfwidth(surrogate, params)
        w_next = chi.next_halfwidth(w, jnp.asarray(fractions[layer], jnp.float32), **controller)
        w_next = jnp.where(step % control["every_steps"] == 0, w_next, w)
        new.update(chi.halfwidth_to_params(surrogate, w_next))
      new_layers[layer] = {k: jnp.asarray(v, jnp.float32) for k, v in new.items()}
    return _nest(new_layers)

  return Estimator(update, metrics)


def _bound_metrics(surrogate, estimator_config, surrogate_state, grads=None, fractions=None):
  return estimator_metrics(surrogate_state, surrogate, estimator_config, grads, fractions)


def logs_chi(estimator_config: Mapping) -> bool:
  """True if kernel chi is logged: asked for (chi.log) or steered (chi.enabled)."""
  return bool(estimator_config["chi"]["enabled"] or estimator_config["chi"]["log"])


def estimator_metrics(surrogate_state: Any, surrogate: surrogates.SurrogateSpec,
                      estimator_config: Mapping, grads: Any = None,
                      fractions: Mapping[str, Array] | None = None) -> dict[str, Array]:
  """Scalars to log, those that can change: scheduled or steered surrogate parameters, their
  half-widths, kernel chi when :func:`logs_chi`, support fractions.

  ``surrogate``: the model's (an object, or a spec to parse). Keys: "surrogate/<layer>/<param>" for
  the scheduled parameter and (chi controller) the width parameter;
  "halfwidth/<layer>" (compact surrogates whose width changes); "chi/<layer>"
  (with ``grads`` and :func:`logs_chi`); "support_fraction/<layer>" (whatever
  ``fractions`` holds). Constants are left out: a surrogate parameter nothing
  changes is in config.json.
  """
  surrogate = surrogates.as_surrogate(surrogate)
  schedule, control = estimator_config["schedule"], estimator_config["chi"]
  compact = surrogates.unwrap(surrogate).name in surrogates.COMPACT_SUPPORT
  width_parameter = chi.width_parameter(surrogate) if compact else None
  changing = {schedule["param"]} - {""}
  if control["enabled"]:
    changing.add(width_parameter)
  width_changes = compact and (control["enabled"] or schedule["param"] == width_parameter)
  metrics = {}
  for layer, params in _layers_of(surrogate_state).items():
    metrics.update({f"surrogate/{layer}/{k}": v for k, v in params.items() if k in changing})
    if width_changes:
      metrics[f"halfwidth/{layer}"] = chi.params_to_halfwidth(surrogate, params)
  if grads is not None and logs_chi(estimator_config):
    metrics.update({f"chi/{k}": v for k, v in chi.chi_per_layer(grads).items()})
  metrics.update({f"support_fraction/{k}": v for k, v in (fractions or {}).items()})
  return metrics
