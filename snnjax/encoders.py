"""Input encoders: static images [B, H, W, C] -> model input over T time steps.

Every encoder takes intensities p in [0, 1] (the pipeline skips mean/std
normalisation for the spike encoders, ``config.data.encoding``):

    direct   the image itself at every step (the default; the model repeats it):
             x_t = p.
    rate     Bernoulli (Poisson-like) rate code: x_t ~ Bernoulli(min(1, gain * p)),
             independent over t and pixels; E[mean_t x_t] = min(1, gain p).
    latency  one spike per pixel, brighter pixels first (linear time-to-first-spike):
             x_t = 1[t = round((1 - p) (T - 1))] where p > threshold, else never.

Spike codes are time-major [T, B, H, W, C] in the input's dtype. Rate codes draw
from a PRNG key: the train step derives it from the run's key and the step
number, so a resumed run draws the same spikes; evaluation uses
:data:`EVAL_KEY_SEED`, so every evaluation of a checkpoint sees the same spikes.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array

ENCODINGS = ("direct", "rate", "latency")

#: The seed of the fixed key evaluation draws rate codes from.
EVAL_KEY_SEED = 0


def _check_steps(T: int) -> None:
  if not isinstance(T, int) or T < 1:
    raise ValueError(f"an encoder needs T >= 1 time steps, got T={T!r}.")


def rate(intensity: Array, T: int, key: Array, gain: float = 1.0) -> Array:
  """Rate code [T, *intensity.shape]: x_t ~ Bernoulli(clip(gain * p, 0, 1)), p = intensity."""
  _check_steps(T)
  probability = jnp.clip(gain * intensity, 0.0, 1.0)
  draws = jax.random.uniform(key, (T, *intensity.shape), jnp.float32)
  return (draws < probability).astype(intensity.dtype)


def latency(intensity: Array, T: int, threshold: float = 0.01) -> Array:
  """Latency code [T, *intensity.shape]: one spike at t = round((1 - p) (T - 1)) if p > threshold.

  p = 1 fires at t = 0, p just above ``threshold`` near t = T - 1; p <= threshold never.
  """
  _check_steps(T)
  p = jnp.clip(intensity, 0.0, 1.0)
  spike_time = jnp.round((1 - p) * (T - 1))
  steps = jnp.arange(T, dtype=spike_time.dtype).reshape((T,) + (1,) * intensity.ndim)
  fires = (steps == spike_time) & (p > threshold)
  return fires.astype(intensity.dtype)


def encode(images: Array, encoding: Mapping, T: int, key: Array | None = None) -> Array:
  """The model input of ``images`` under ``encoding`` (the ``config.data.encoding`` block).

  Args:
    images: [B, H, W, C] intensities in [0, 1] (any values for "direct"), or frames
      [T, B, ...] (returned unchanged: they are already a sequence).
    encoding: {"kind": one of :data:`ENCODINGS`, "gain": ..., "threshold": ...}.
    T: time steps of the model.
    key: PRNG key of the rate code; None uses the evaluation key (:data:`EVAL_KEY_SEED`).

  Returns:
    ``images`` for "direct" and frame inputs (the model repeats a static image), else the
    spike code [T, B, H, W, C].
  """
  kind = encoding["kind"]
  if kind == "direct" or images.ndim != 4:
    return images
  if kind == "rate":
    key = jax.random.key(EVAL_KEY_SEED) if key is None else key
    return rate(images, T, key, encoding["gain"])
  if kind == "latency":
    return latency(images, T, encoding["threshold"])
  raise ValueError(f"unknown encoding {kind!r}; allowed: {', '.join(ENCODINGS)}.")
