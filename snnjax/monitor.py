"""Recording what every neuron layer of a model does over time, on demand.

    recording = monitor.record(model, variables, images, layers=["sn1", "sn3"])
    recording["sn1"]["spikes"]                  # [T, B, H, W, C]
    recording["sn1"]["membrane_before_reset"]   # h[t]: charged, before firing
    recording["sn1"]["membrane"]                # v[t]: after reset
    recording["sn1"]["input"]                   # x[t]: the input current

The neuron modules of :mod:`snnjax.layers` sow these into the ``"monitor"``
collection when, and only when, it is mutable, so a model records without any
change to its code and costs nothing extra when nobody records. A layer is
named by its module path, e.g. "sn1" or "layer2_0/sn2"; :func:`layer_names`
lists them in call order (Flax method interception, traced, not run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import traverse_util

from snnjax.layers import MONITOR_COLLECTION, MONITORED, SpikingNeuron

Array = jax.Array

__all__ = ["MONITORED", "check_layers", "layer_names", "record"]


def layer_names(model: nn.Module, variables: Mapping[str, Any], inputs: Any) -> list[str]:
  """Every neuron layer of ``model``, by module path, in call order (traced, not run)."""
  order: list[str] = []

  def note_neuron_calls(next_fun, args, kwargs, context):
    module = context.module
    if isinstance(module, SpikingNeuron) and context.method_name == "__call__":
      name = "/".join(module.path)
      if name not in order:
        order.append(name)
    return next_fun(*args, **kwargs)

  def trace(variables, inputs):
    with nn.intercept_methods(note_neuron_calls):
      return model.apply(variables, inputs, train=False)

  jax.eval_shape(trace, variables, inputs)
  return order


def check_layers(known: list[str], wanted: Iterable[str] | None) -> list[str]:
  """``wanted`` (default: every layer of ``known``), each checked to exist, in ``known``'s order.

  Raises:
    ValueError: a wanted layer not in ``known`` (names the ones there are).
  """
  if wanted is None:
    return list(known)
  wanted = list(wanted)
  unknown = [name for name in wanted if name not in known]
  if unknown:
    raise ValueError(f"no neuron layer {unknown} in this model; its neuron layers are {known}.")
  return [name for name in known if name in wanted]


def record(model: nn.Module, variables: Mapping[str, Any], inputs: Array,
           layers: Iterable[str] | None = None, train: bool = False
           ) -> dict[str, dict[str, Array]]:
  """Runs ``model`` on ``inputs`` and returns every requested layer's recording.

  Args:
    model, variables: a model and its variables (params, batch_stats, surrogate).
    inputs: the model's input (images [B, ...] or a sequence [T, B, ...]).
    layers: neuron layer paths (default: all of them, :func:`layer_names`).
    train: run in train mode (batch statistics; the running averages are not kept).

  Returns:
    {layer: {name: [T, B, ...] float array}} for each name in :data:`MONITORED`, in the
    order of ``layers`` (all layers: by path; under jit, pytree order, sorted by path).
    A layer called several times keeps its first call.

  Raises:
    ValueError: a requested layer the model does not have (names the ones it has).
  """
  mutable = [MONITOR_COLLECTION] + (["batch_stats"] if train else [])
  _, state = model.apply(variables, inputs, train=train, mutable=mutable)
  recording: dict[str, dict[str, Array]] = {}
  for path, calls in traverse_util.flatten_dict(dict(state[MONITOR_COLLECTION])).items():
    recording.setdefault("/".join(path[:-1]), {})[path[-1]] = calls[0]
  if layers is None:
    return recording
  if any(name not in recording for name in layers):
    check_layers(layer_names(model, variables, inputs), layers)   # names them, in call order
  return {name: recording[name] for name in layers}
