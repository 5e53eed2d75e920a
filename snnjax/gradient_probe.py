"""Gradient-error probes: the surrogate gradient against finite differences of the true loss.

Per layer, :func:`gradient_probe` compares the surrogate gradient's
directional derivatives with central finite differences of the true
(spiking) loss along random directions, with percentile-bootstrap intervals;
``snnjax.probe`` runs it on a checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from snnjax import chi

Array = jax.Array


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
  return sorted(chi.chi_per_layer(params), key=_natural_key)


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
