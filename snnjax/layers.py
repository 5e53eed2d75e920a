"""Flax modules around the pure neurons, and helpers for the time axis.

Tensors inside a model are time-major: [T, B, ...]. Flax's Conv, Dense and
BatchNorm act on any number of leading batch axes, so they apply to
[T, B, H, W, C] directly, exactly as on the merged [T*B, H, W, C] view (BatchNorm
statistics are then shared over time, as in the reference code of Surrogate
Module Learning). Flax pooling with explicit padding needs one batch axis:
``snnjax.models.common.pool2d`` folds the leading axes into one first
(:func:`fold_time` does the same for [T, B, ...]). Neuron modules scan over T.

Each neuron module keeps its surrogate's parameters (alpha, width, beta, ...) as
float32 scalars in the non-trainable ``"surrogate"`` collection, initialised
from the module's ``surrogate`` attribute. Schedules and controllers update that
collection between steps; being array values, the updates never recompile.
Each neuron module also sows its mean firing rate (spikes per neuron per time
step), and for compact-support surrogates the share of pre-activations inside
the support, into the ``"intermediates"`` collection when it is mutable.

Online execution (one time step per call, :mod:`snnjax.train.steps`'s SLTT
gradient): when the ``"membrane"`` collection is mutable, each neuron module
starts from the membrane it holds there and stores its final membrane back, so
that calling the model T times on one step each continues the neurons' state.
The collection stores v - v_reset (zeros: every neuron at rest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from snnjax import neurons, surrogates

Array = jax.Array

SURROGATE_COLLECTION = "surrogate"
ACTIVITY_COLLECTION = "intermediates"
FIRING_RATE = "firing_rate"
SUPPORT_FRACTION = "support_fraction"
#: Collection of the full recordings (snnjax.monitor): sown only when it is mutable.
MONITOR_COLLECTION = "monitor"
#: What a neuron module records into :data:`MONITOR_COLLECTION`, each [T, ...] of its input.
MONITORED = ("input", "membrane_before_reset", "membrane", "spikes")
#: Collection of the neurons' membrane between calls (online execution), as v - v_reset.
MEMBRANE_COLLECTION = "membrane"

def surrogate_state(module: nn.Module, spec: surrogates.SurrogateSpec) -> surrogates.AnySurrogate:
  """The module's surrogate with parameters read from its ``"surrogate"`` variables.

  ``spec``: the parsed surrogate (what models built from a config hold), or a spec
  :func:`snnjax.surrogates.as_surrogate` parses.
  """
  surrogate = surrogates.as_surrogate(spec)
  values = {
      name: module.variable(SURROGATE_COLLECTION, name,
                            lambda v=value: jnp.asarray(v, jnp.float32)).value
      for name, value in surrogates.parameters(surrogate).items()
  }
  return surrogates.with_parameters(surrogate, values)


def sown_means(collection: Mapping[str, Any], name: str) -> dict[str, Array]:
  """{module path: mean of the values sown as ``name``} from the ``"intermediates"`` collection.

  ``collection`` is the variables returned by ``apply(..., mutable=["intermediates"])``
  or that collection itself. A module called several times reports the mean
  over its calls. Paths join module names with "/", e.g. ``"layer1_0/sn1"``;
  values are float32 scalars, in sorted path order; jit-friendly.
  """
  collection = collection.get(ACTIVITY_COLLECTION, collection)
  means = {}
  for path, value in sorted(traverse_util.flatten_dict(collection).items()):
    if path[-1] != name:
      continue
    calls = value if isinstance(value, (tuple, list)) else (value,)
    means["/".join(path[:-1])] = jnp.mean(jnp.stack(
        [jnp.mean(jnp.asarray(c, jnp.float32)) for c in calls]))
  return means


def fire(module: nn.Module, neuron_fn, x: Array, **neuron_kwargs: Any) -> Array:
  """Runs a multi-step neuron with the module's surrogate state; records activity.

  When the ``"monitor"`` collection is mutable it also sows the whole recording
  (:data:`MONITORED`: input current x, membrane h before reset, membrane v after
  reset, spikes; each [T, ...]; see :mod:`snnjax.monitor`). Otherwise nothing
  extra is computed.

  When the ``"membrane"`` collection is mutable the neuron starts from the
  membrane stored there (v_reset + stored; zeros at first) and stores its final
  membrane back (see the module docstring).

  When the ``"intermediates"`` collection is mutable it sows, per layer:
  ``firing_rate`` = mean(spikes), spikes per neuron per time step; and, for
  compact-support surrogates, ``support_fraction`` = mean(|h - v_threshold| <
  halfwidth), the share of pre-activations (over time, batch and neurons) whose
  surrogate gradient can be non-zero.
  """
  surrogate = surrogate_state(module, module.surrogate)
  record = module.is_mutable_collection(ACTIVITY_COLLECTION)
  monitor = module.is_mutable_collection(MONITOR_COLLECTION) and not module.is_initializing()
  carried = None
  if module.is_mutable_collection(MEMBRANE_COLLECTION) and not module.is_initializing():
    carried = module.variable(MEMBRANE_COLLECTION, "v", jnp.zeros, x.shape[1:], x.dtype)
    neuron_kwargs["v_init"] = module.v_reset + carried.value
  out = neuron_fn(x, v_threshold=module.v_threshold, v_reset=module.v_reset, reset=module.reset,
                  detach_reset=module.detach_reset, surrogate=surrogate, unroll=module.unroll,
                  return_charge=record or monitor, trace=monitor, **neuron_kwargs)
  spikes = out[0]
  if carried is not None:
    carried.value = (out[1][-1] if monitor else out[1]) - module.v_reset
  if monitor:
    for name, value in zip(MONITORED, (x, out[2], out[1], spikes)):
      module.sow(MONITOR_COLLECTION, name, value)
  if record:
    module.sow(ACTIVITY_COLLECTION, FIRING_RATE, jnp.mean(spikes.astype(jnp.float32)))
    if surrogates.unwrap(surrogate).name in surrogates.COMPACT_SUPPORT:
      fraction = surrogates.support_fraction(out[2] - module.v_threshold, surrogate)
      module.sow(ACTIVITY_COLLECTION, SUPPORT_FRACTION, fraction)
  return spikes


class SpikingNeuron(nn.Module):
  """Settings every neuron module shares (a base class, not a neuron).

  Attributes:
    v_threshold: firing threshold; a surrogate-gradient-scaling (SGS) surrogate
      takes it (an explicit, different threshold in its spec is a ValueError).
    v_reset: reset and resting potential.
    reset: "hard" | "soft". detach_reset: no gradient through the reset.
    surrogate: a surrogate, its name or spec string, or a {"name": ...} mapping.
    unroll: ``jax.lax.scan`` unrolling of the time loop (True: fully, which lets
      XLA fuse the steps; fine for the usual T <= 16).
  """

  v_threshold: float = 1.0
  v_reset: float = 0.0
  reset: str = "hard"
  detach_reset: bool = False
  surrogate: surrogates.SurrogateSpec = "atan"
  unroll: int | bool = True


class IF(SpikingNeuron):
  """Integrate-and-fire over [T, ...]: h = v + x; see :func:`snnjax.neurons.if_`."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return fire(self, neurons.if_, x)


class LIF(SpikingNeuron):
  """Leaky integrate-and-fire over [T, ...]; see :func:`snnjax.neurons.lif`.

  Defaults are the neuron of Surrogate Module Learning: tau=2,
  decay_input=False, v_reset=0, hard reset, i.e. u(t+1) = 0.5 u(t) + I(t).
  """

  tau: float = 2.0
  decay_input: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return fire(self, neurons.lif, x, tau=self.tau, decay_input=self.decay_input)


class PLIF(SpikingNeuron):
  """Parametric LIF over [T, ...]: a learnable scalar w per layer, tau = 1 + exp(-w).

  ``tau`` is the initial time constant (> 1); see :func:`snnjax.neurons.plif`.
  """

  tau: float = 2.0
  decay_input: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    w0 = neurons.plif_w_from_tau(self.tau)
    w = self.param("w", lambda _: jnp.asarray(w0, jnp.float32))
    return fire(self, lambda x, **kw: neurons.plif(x, w, **kw), x, decay_input=self.decay_input)


NEURONS: dict[str, type[nn.Module]] = {"if": IF, "lif": LIF, "plif": PLIF}


def neuron(kind: str, **kwargs: Any) -> nn.Module:
  """Builds a neuron module by name ("if", "lif", "plif"); kwargs go to the module.

  Raises:
    ValueError: unknown kind, or an argument the kind does not take.
  """
  if kind not in NEURONS:
    raise ValueError(f"unknown neuron {kind!r}; allowed: {', '.join(NEURONS)}.")
  cls = NEURONS[kind]
  allowed = {f for f in cls.__dataclass_fields__ if f not in ("parent", "name")}
  unknown = set(kwargs) - allowed
  if unknown:
    raise ValueError(f"neuron {kind!r} takes {sorted(allowed)}, not {sorted(unknown)}.")
  return cls(**kwargs)


# ---------------------------------------------------------------------------
# Time-axis helpers.


def repeat_over_time(images: Array, T: int) -> Array:
  """Direct encoding: a static batch [B, ...] repeated to [T, B, ...]."""
  if T < 1:
    raise ValueError(f"the number of time steps T must be >= 1, got T={T}.")
  return jnp.broadcast_to(images[None], (T, *images.shape))


def fold_time(x: Array) -> Array:
  """[T, B, ...] -> [T*B, ...] (time-major merge)."""
  return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def unfold_time(x: Array, T: int) -> Array:
  """[T*B, ...] -> [T, B, ...]; inverse of :func:`fold_time`."""
  if x.shape[0] % T:
    raise ValueError(f"leading axis {x.shape[0]} is not a multiple of T={T}.")
  return x.reshape(T, x.shape[0] // T, *x.shape[1:])


def time_major_input(x: Array, T: int, spatial_ndim: int = 3) -> Array:
  """A model input as [T, B, ...].

  A static batch [B, *spatial] (``spatial_ndim`` trailing axes, 3 for HWC) is
  repeated T times; a sequence [T, B, *spatial] must already have T steps.
  """
  if x.ndim == spatial_ndim + 1:
    return repeat_over_time(x, T)
  if x.ndim == spatial_ndim + 2:
    if x.shape[0] != T:
      raise ValueError(
          f"input sequence has {x.shape[0]} time steps but the model was built with T={T}; "
          "pass time-major [T, B, H, W, C] frames or set T to match.")
    return x
  raise ValueError(
      f"expected images [B, H, W, C] or frames [T, B, H, W, C], got shape {x.shape}.")


def time_mean(x: Array) -> Array:
  """Rate readout: mean over the leading time axis, [T, B, ...] -> [B, ...]."""
  return jnp.mean(x, axis=0)
