"""Schedules of a surrogate parameter over training, built on optax's schedules.

A schedule goes from ``start`` at step 0 to ``end`` at ``total_steps`` (the
whole training, as for the learning rate) and keeps ``end`` after it. With
the progress p = step / total_steps clipped to [0, 1]:

    constant:     start                                          optax.constant_schedule
    linear:       start + (end - start) p                        optax.linear_schedule
    cosine:       end + (start - end) (1 + cos(pi p)) / 2        optax.cosine_decay_schedule
    exponential:  exp(log start + (log end - log start) p)       optax.exponential_decay
    gsg:          exponential, for gsg_tanh's beta

"gsg" is the gradual surrogate gradient of "Gradual Surrogate Gradient
Learning in Deep Spiking Neural Networks" (Chen et al., ICASSP 2022), with e
the epoch (0-based) and E the number of training epochs:

    beta(e) = exp(log beta_min + (log beta_max - log beta_min) e / E)

for the ``gsg_tanh`` surrogate (:func:`snnjax.surrogates.gsg_tanh`). With a
0-based epoch the last epoch trains at e = E - 1 (snnjax's reading of the
formula); beta_max is reached at e = E.

Units: "step" reads the schedule at every step; "epoch" reads it at the
first step of the current epoch, p = e / E with e = floor(step /
steps_per_epoch), so the value changes only at epoch boundaries.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

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


def constant(start: float, end: float, total_steps: int) -> optax.Schedule:
  """start at every step (``end`` is ignored)."""
  del end, total_steps
  return optax.constant_schedule(start)


def linear(start: float, end: float, total_steps: int) -> optax.Schedule:
  """start + (end - start) p."""
  return optax.linear_schedule(start, end, total_steps)


def cosine(start: float, end: float, total_steps: int) -> optax.Schedule:
  """end + (start - end) (1 + cos(pi p)) / 2: start at p=0, end at p=1, slow at both ends."""
  half_cosine = optax.cosine_decay_schedule(1.0, total_steps)  # (1 + cos(pi p)) / 2
  return lambda step: end + (start - end) * half_cosine(step)


def exponential(start: float, end: float, total_steps: int) -> optax.Schedule:
  """Log-linear: exp(log start + (log end - log start) p) = start (end/start)^p; start, end > 0.

  Raises:
    ValueError: start or end <= 0.
  """
  if not (start > 0 and end > 0):
    raise ValueError(f"a log-linear schedule needs start > 0 and end > 0, got start={start}, "
                     f"end={end}.")
  return optax.exponential_decay(start, total_steps, end / start, end_value=end)


#: Schedule kinds: kind -> (start, end, total_steps) -> optax schedule of the step.
SCHEDULES: dict[str, Callable[[float, float, int], optax.Schedule]] = {
    "gsg": exponential,
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "exponential": exponential,
}


def per_epoch(schedule: optax.Schedule, steps_per_epoch: int) -> optax.Schedule:
  """``schedule`` read at the first step of the current epoch: a staircase of epochs."""
  period = max(int(steps_per_epoch), 1)
  return lambda step: schedule(jnp.floor_divide(step, period) * period)


def make_schedule(kind: str, start: float, end: float, *, unit: str, steps_per_epoch: int,
                  total_steps: int) -> Callable[[Array], Array]:
  """The schedule ``kind`` from start to end over ``total_steps``, read per ``unit``.

  Args:
    kind: a key of :data:`SCHEDULES`.
    start, end: the values at step 0 and at ``total_steps`` (and after).
    unit: "step" or "epoch" (the value changes only at epoch boundaries).
    steps_per_epoch, total_steps: static lengths, >= 1.

  Returns:
    step (int, may be traced) -> float32 value.

  Raises:
    ValueError: unknown kind or unit, lengths < 1, or a log-linear schedule
      with start or end <= 0.
  """
  if kind not in SCHEDULES:
    raise ValueError(f"unknown schedule kind {kind!r}; allowed: {', '.join(SCHEDULES)}.")
  if unit not in UNITS:
    raise ValueError(f"unknown schedule unit {unit!r}; allowed: {', '.join(UNITS)}.")
  if steps_per_epoch < 1 or total_steps < 1:
    raise ValueError(f"steps_per_epoch={steps_per_epoch} and total_steps={total_steps} "
                     "must be >= 1.")
  schedule = SCHEDULES[kind](start, end, total_steps)
  if unit == "epoch":
    schedule = per_epoch(schedule, steps_per_epoch)
  return lambda step: jnp.asarray(schedule(jnp.asarray(step)), jnp.float32)
