"""chi and the support-width controller of compact surrogates.

chi, from "Efficient Surrogate Gradients for Training Spiking Neural
Networks" (ICLR 2023 submission): the fraction of a layer's parameters that
receive a non-zero gradient. :func:`chi_per_layer` measures it for every
kernel (for logging). The paper's width controller is not public; snnjax's
choice is the multiplicative rule of :func:`next_halfwidth`, driven per
neuron layer by the layer's *support fraction* f: the fraction of its
pre-activations x = h - v_th (over time, batch and neurons) with |x| < w, the
surrogate's support half-width (:func:`snnjax.surrogates.support_halfwidth`).
Those are exactly the pre-activations that pass a gradient, so f is the
per-layer chi signal snnjax controls; kernel chi is only logged, because a
conv kernel entry sees many positions and its chi saturates at 1 long before
the neurons' does.

    fractions = support_fractions(updates["intermediates"])   # {"sn1": f, ...}
    w = params_to_halfwidth(sg, params)
    params = halfwidth_to_params(sg, next_halfwidth(w, fractions["sn1"], ...))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from snnjax import layers, surrogates

Array = jax.Array


def _width(sg: surrogates.AnySurrogate) -> tuple[str, Any]:
  """(width parameter, its map to the half-width) of a compact surrogate (SGS: of its base)."""
  width = surrogates.KINDS[surrogates.unwrap(sg).name].width
  if width is None:
    raise ValueError(f"surrogate {sg.name!r} has no compact support, so it has no support width; "
                     f"use one of {', '.join(surrogates.COMPACT_SUPPORT)}.")
  return width


def width_parameter(sg: surrogates.AnySurrogate) -> str:
  """The parameter that sets the support half-width of a compact surrogate (SGS: of its base).

  Raises:
    ValueError: ``sg`` has no compact support.
  """
  return _width(sg)[0]


def halfwidth_to_params(sg: surrogates.AnySurrogate, halfwidth: Any) -> dict[str, Array]:
  """The width parameter that gives support half-width ``halfwidth`` (units of x), float32.

  rectangle alpha = 1/(2w); triangle gamma = w; piecewise_quadratic alpha = 1/w;
  dspike r = w (each map of :data:`snnjax.surrogates.KINDS` is its own inverse). Each
  keeps the area under h at 1. Inverse of :func:`params_to_halfwidth`.
  """
  key, to_value = _width(sg)
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
  return layers.sown_means(collection, layers.SUPPORT_FRACTION)


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
