"""Spiking neurons as pure functions, scanned over a leading time axis.

One time step t of an integrate-and-fire neuron, element-wise:

    h[t] = charge(v[t-1], x[t])         # integrate the input current x
    s[t] = H(h[t] - v_threshold)         # fire; surrogate gradient backward
    v[t] = reset(h[t], s[t])             # hard: h (1 - s) + v_reset s
                                         # soft: h - v_threshold s

with v[-1] = v_reset. Charge functions (SpikingJelly's parameterisation, so
published settings carry over; k = 1/tau is the leak per step):

    IF:                      h = v + x
    LIF, decay_input=False:  h = v - (v - v_reset) k + x
    LIF, decay_input=True:   h = v + (x - (v - v_reset)) k

PLIF is LIF with a learnable k = sigmoid(w), i.e. tau = 1 + exp(-w)
("Incorporating Learnable Membrane Time Constant to Enhance Learning of Spiking
Neural Networks", Fang et al., ICCV 2021). The "u(t+1) = 0.5 u(t) + I(t)"
neuron of Surrogate Module Learning is ``lif(tau=2, decay_input=False, v_reset=0)``.

Every multi-step function takes x_seq of shape [T, ...] (any trailing shape),
runs one ``jax.lax.scan`` of its step function, and returns ``(spikes, v)``:
spikes [T, ...] in x's dtype and the final membrane v [...] (or, with
``trace=True``, the membrane after every step, [T, ...]).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from snnjax import surrogates, validation

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

RESETS = ("hard", "soft")


def _check_sequence(x_seq: Array) -> None:
  if jnp.ndim(x_seq) < 1 or x_seq.shape[0] < 1:
    raise ValueError(
        f"a neuron needs x_seq of shape [T, ...] with T >= 1, got shape {jnp.shape(x_seq)}; "
        "repeat static inputs over time with snnjax.layers.repeat_over_time.")


def _check_reset(reset: str) -> None:
  if reset not in RESETS:
    raise ValueError(f"unknown reset {reset!r}; allowed: {', '.join(RESETS)}.")


def _check_tau(tau: ArrayLike) -> None:
  validation.check_all(tau, lambda t: t >= 1,
                       f"a LIF neuron needs tau >= 1 (time steps), got tau={tau}.")


def _default_surrogate(surrogate: surrogates.AnySurrogate | None) -> surrogates.AnySurrogate:
  return surrogates.atan() if surrogate is None else surrogate


# ---------------------------------------------------------------------------
# Charge functions: h = charge(v, x).


def charge_if(v: Array, x: Array) -> Array:
  """IF: h = v + x."""
  return v + x


def charge_leaky(v: Array, x: Array, k: Array, v_reset: ArrayLike, decay_input: bool) -> Array:
  """LIF with leak k = 1/tau per step.

  decay_input=False: h = v - (v - v_reset) k + x; True: h = v + (x - (v - v_reset)) k.
  """
  if decay_input:
    return v + (x - (v - v_reset)) * k
  return v - (v - v_reset) * k + x


# ---------------------------------------------------------------------------
# Fire and reset: shared by every neuron.


def fire_and_reset(h: Array, *, v_threshold: ArrayLike, v_reset: ArrayLike, reset: str,
                   detach_reset: bool, surrogate: surrogates.AnySurrogate) -> tuple[Array, Array]:
  """s = H(h - v_threshold); v = h (1 - s) + v_reset s (hard) or h - v_threshold s (soft).

  The surrogate receives this neuron's threshold (surrogate gradient scaling
  needs it to recover v; see :func:`snnjax.surrogates.with_threshold`).

  Returns:
    (v after reset, s).
  """
  s = surrogates.spike(h - v_threshold, surrogate, v_threshold=v_threshold)
  s_reset = jax.lax.stop_gradient(s) if detach_reset else s
  if reset == "hard":
    v = h * (1 - s_reset) + v_reset * s_reset
  else:
    v = h - v_threshold * s_reset
  return v, s


def _run(charge: Callable[[Array, Array], Array], x_seq: Array, *, v_threshold, v_reset, reset,
         detach_reset, surrogate, v_init, trace, unroll, return_charge=False) -> tuple:
  """Scans ``charge`` + :func:`fire_and_reset` over the leading axis of x_seq."""
  _check_sequence(x_seq)
  _check_reset(reset)
  surrogate = _default_surrogate(surrogate)
  dtype = x_seq.dtype
  v_threshold = jnp.asarray(v_threshold, dtype)
  surrogate = surrogates.with_threshold(surrogate, v_threshold)  # SGS: checked once, here
  v_reset = jnp.asarray(v_reset, dtype)
  v0 = jnp.broadcast_to(v_reset, x_seq.shape[1:]) if v_init is None else v_init.astype(dtype)

  def step(v, x):
    h = charge(v, x)
    v, s = fire_and_reset(h, v_threshold=v_threshold, v_reset=v_reset, reset=reset,
                          detach_reset=detach_reset, surrogate=surrogate)
    return v, (s, v if trace else None, h if return_charge else None)

  v_final, (spikes, v_seq, h_seq) = jax.lax.scan(step, v0, x_seq, unroll=unroll)
  membrane = v_seq if trace else v_final
  return (spikes, membrane, h_seq) if return_charge else (spikes, membrane)


def if_(x_seq: Array, v_threshold: ArrayLike = 1.0, v_reset: ArrayLike = 0.0, reset: str = "hard",
        detach_reset: bool = False, surrogate: surrogates.AnySurrogate | None = None,
        v_init: Array | None = None, trace: bool = False, unroll: int | bool = 1,
        return_charge: bool = False) -> tuple[Array, ...]:
  """Multi-step integrate-and-fire: h = v + x, then fire and reset.

  Args:
    x_seq: input current [T, ...], T >= 1.
    v_threshold: firing threshold (voltage units).
    v_reset: reset and initial potential; the hard reset's target.
    reset: "hard" (v <- v_reset) or "soft" (v <- v - v_threshold) after a spike.
    detach_reset: stop the gradient through the spike inside the reset.
    surrogate: spike surrogate; default ``surrogates.atan(2.0)``.
    v_init: initial membrane [...]; default v_reset.
    trace: return the membrane after every step [T, ...] instead of the final one.
    unroll: passed to ``jax.lax.scan``.
    return_charge: also return the charged membrane h [T, ...] (before firing
      and reset; spikes are H(h - v_threshold)), for analysis.

  Returns:
    (spikes [T, ...], membrane), or (spikes, membrane, h) with return_charge.
  """
  return _run(charge_if, x_seq, v_threshold=v_threshold, v_reset=v_reset, reset=reset,
              detach_reset=detach_reset, surrogate=surrogate, v_init=v_init, trace=trace,
              unroll=unroll, return_charge=return_charge)


def lif(x_seq: Array, tau: ArrayLike = 2.0, v_threshold: ArrayLike = 1.0,
        v_reset: ArrayLike = 0.0, decay_input: bool = False, reset: str = "hard",
        detach_reset: bool = False, surrogate: surrogates.AnySurrogate | None = None,
        v_init: Array | None = None, trace: bool = False, unroll: int | bool = 1,
        return_charge: bool = False) -> tuple[Array, ...]:
  """Multi-step leaky integrate-and-fire with time constant tau (time steps, >= 1).

  decay_input=False: h = v - (v - v_reset)/tau + x; True: h = v + (x - (v - v_reset))/tau.
  Other arguments and the return value as in :func:`if_`.
  """
  _check_tau(tau)
  k = 1 / jnp.asarray(tau, x_seq.dtype)
  charge = functools.partial(charge_leaky, k=k, v_reset=jnp.asarray(v_reset, x_seq.dtype),
                             decay_input=decay_input)
  return _run(charge, x_seq, v_threshold=v_threshold, v_reset=v_reset, reset=reset,
              detach_reset=detach_reset, surrogate=surrogate, v_init=v_init, trace=trace,
              unroll=unroll, return_charge=return_charge)


def plif(x_seq: Array, w: ArrayLike, v_threshold: ArrayLike = 1.0, v_reset: ArrayLike = 0.0,
         decay_input: bool = True, reset: str = "hard", detach_reset: bool = False,
         surrogate: surrogates.AnySurrogate | None = None, v_init: Array | None = None,
         trace: bool = False, unroll: int | bool = 1,
         return_charge: bool = False) -> tuple[Array, ...]:
  """Multi-step parametric LIF: LIF with leak k = sigmoid(w) = 1/tau, w learnable.

  tau = 1 + exp(-w) > 1 for every real w; gradients flow into w. Use
  :func:`plif_w_from_tau` for the initial w (tau=2 -> w=0). Other arguments and
  the return value as in :func:`if_`; decay_input defaults to True as in the
  paper.
  """
  k = jax.nn.sigmoid(jnp.asarray(w)).astype(x_seq.dtype)
  charge = functools.partial(charge_leaky, k=k, v_reset=jnp.asarray(v_reset, x_seq.dtype),
                             decay_input=decay_input)
  return _run(charge, x_seq, v_threshold=v_threshold, v_reset=v_reset, reset=reset,
              detach_reset=detach_reset, surrogate=surrogate, v_init=v_init, trace=trace,
              unroll=unroll, return_charge=return_charge)


def plif_w_from_tau(tau: float) -> float:
  """The PLIF parameter w with 1 + exp(-w) = tau, i.e. w = -log(tau - 1); needs tau > 1."""
  if tau <= 1:
    raise ValueError(f"PLIF needs an initial tau > 1, got tau={tau}.")
  return -math.log(tau - 1)


# ---------------------------------------------------------------------------
# Single steps, for analysis and custom loops.


def lif_step(v: Array, x: Array, tau: ArrayLike = 2.0, v_threshold: ArrayLike = 1.0,
             v_reset: ArrayLike = 0.0, decay_input: bool = False, reset: str = "hard",
             detach_reset: bool = False, surrogate: surrogates.AnySurrogate | None = None
             ) -> tuple[Array, Array]:
  """One LIF step: (v[t-1], x[t]) -> (v[t], s[t]). ``lif`` scans exactly this."""
  _check_reset(reset)
  h = charge_leaky(v, x, 1 / jnp.asarray(tau, x.dtype), jnp.asarray(v_reset, x.dtype),
                   decay_input)
  return fire_and_reset(h, v_threshold=jnp.asarray(v_threshold, x.dtype),
                        v_reset=jnp.asarray(v_reset, x.dtype), reset=reset,
                        detach_reset=detach_reset, surrogate=_default_surrogate(surrogate))
