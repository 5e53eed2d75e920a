"""Firing rates, synaptic operations and the energy estimate of an SNN.

The estimate used by the surrogate-gradient papers snnjax implements (45 nm
CMOS figures, E_MAC = 3.2 pJ per multiply-accumulate, E_AC = 0.1 pJ per
accumulate), per image and one whole inference of T time steps:

    E_ANN = sum_l FLOPs_l * E_MAC
    E_SNN = FLOPs_1 * E_MAC + sum_{l>=2} FLOPs_l * r_{l-1} * T * E_AC

FLOPs_l counts one image's multiply-accumulates of layer l in one time step and
r_{l-1} is the measured firing rate of layer l's input (spikes per neuron per
time step).

It works for any Flax model without model-specific code: :func:`record_layers`
runs ``model.apply`` under ``flax.linen.intercept_methods`` and records every
``nn.Conv`` and ``nn.Dense`` call (its path, input statistics, kernel and output
shapes) and which neuron layer's spikes it reads (``LayerCall.source``, e.g.
conv2 reads sn1), so that a firing rate, listed by neuron, and an energy row,
listed by synaptic layer, can be matched. snnjax's choice, which generalises the
formula's "first layer" to every layer by what its input is:

- spiking input (every input value is 0 or 1): ACs = FLOPs_l * r * T_l, with r
  the mean of the input and T_l the number of time steps the layer ran for;
- analog input (anything else, e.g. the image, an average-pooled rate, an
  ISNM current): MACs = FLOPs_l if the input is the same at every time step
  (direct encoding: computed once, as the formula counts FLOPs_1), else
  FLOPs_l * T_l (one multiply-accumulate pass per distinct time step).

Energies are in pJ per image (a whole T-step inference); :func:`format_report`
converts units. Estimate at evaluation (``train=False``), when Surrogate Module
Learning heads, which are dropped at inference, are not run.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snnjax import layers

Array = jax.Array

E_MAC_PJ = 3.2
E_AC_PJ = 0.1

_UNITS = {"pJ": 1.0, "nJ": 1e3, "uJ": 1e6, "mJ": 1e9}


def firing_rates(collection: Mapping[str, Any]) -> dict[str, Array]:
  """{layer path: mean firing rate} (spikes per neuron per time step) from ``"intermediates"``.

  Reads the ``"firing_rate"`` values sown by the neuron modules of
  :mod:`snnjax.layers`; see :func:`snnjax.layers.sown_means`.
  """
  return layers.sown_means(collection, layers.FIRING_RATE)


@dataclasses.dataclass(frozen=True)
class LayerCall:
  """One recorded call of an ``nn.Conv`` or ``nn.Dense``.

  Attributes:
    name: the module's path, names joined by "/".
    kind: "conv" or "dense".
    input_shape, kernel_shape, output_shape: array shapes of the call.
    time_steps: T_l, the time steps the call covered: T for a time-major
      input [T, B, ...] or [T*B, ...], 1 for a per-image input [B, ...].
    flops: FLOPs_l, multiply-accumulates for one image and one time step:
      output elements per image per step * kernel elements per output feature
      (kh*kw*C_in/groups for a conv, C_in for a dense layer).
    spiking: every input value is 0 or 1.
    time_invariant: the input is identical at every time step.
    input_rate: mean of the input; for a spiking input, spikes per neuron per step.
    source: path of the neuron module whose output this call reads (the same
      values in the same order, reshaped or not), or None: an analog input, or
      spikes changed on the way (e.g. max-pooled).
  """

  name: str
  kind: str
  input_shape: tuple[int, ...]
  kernel_shape: tuple[int, ...]
  output_shape: tuple[int, ...]
  time_steps: int
  flops: int
  spiking: bool
  time_invariant: bool
  input_rate: float
  source: str | None = None


def _fingerprint(x: Array) -> tuple[Array, Array]:
  """(count of non-zeros, sum of the flat indices' hashes where x != 0, mod 2**32).

  Equal for an array and any reshape of it (flat order is kept); for 0/1
  spike arrays of one size, a collision of both numbers has odds ~2**-32.
  """
  nonzero = jnp.ravel(x) != 0
  index_hash = jnp.arange(nonzero.size, dtype=jnp.uint32) * jnp.uint32(2654435761)  # Knuth
  return (jnp.sum(nonzero, dtype=jnp.int32),
          jnp.sum(jnp.where(nonzero, index_hash, jnp.uint32(0)), dtype=jnp.uint32))


def _source(call_index: int, size: int, fingerprint: tuple[Any, ...],
            neuron_calls: Sequence[tuple[int, str, int, tuple[Any, ...]]]) -> str | None:
  """The latest neuron call before ``call_index`` whose output has this size and fingerprint."""
  for index, name, neuron_size, neuron_fingerprint in reversed(neuron_calls):
    if (index < call_index and neuron_size == size
        and tuple(map(int, neuron_fingerprint)) == tuple(map(int, fingerprint))):
      return name
  return None


def _time_steps(name: str, shape: tuple[int, ...], T: int, batch_size: int) -> int:
  """T_l from the input layout; [T, B, ...] wins when B == T makes [B, B, ...] ambiguous."""
  if T > 1 and shape and shape[0] == T * batch_size:
    return T
  if T > 1 and len(shape) >= 2 and shape[:2] == (T, batch_size):
    return T
  if shape and shape[0] == batch_size:
    return 1
  raise ValueError(
      f"layer {name!r} got input of shape {shape}, which is neither time-major "
      f"[T={T}, B={batch_size}, ...] / [T*B={T * batch_size}, ...] nor per-image "
      f"[B={batch_size}, ...]; pass the right T and batch_size.")


def record_layers(model: nn.Module, variables: Mapping[str, Any], inputs: Any, *, T: int,
                  batch_size: int | None = None, method: Any = None,
                  **apply_kwargs: Any) -> list[LayerCall]:
  """Records every ``nn.Conv`` / ``nn.Dense`` call of one jitted ``model.apply``, in call order.

  Runs ``model.apply(variables, inputs, method=method, **apply_kwargs)`` once
  under ``flax.linen.intercept_methods``; input statistics reach the host by
  ``jax.debug.callback``, so layers under ``nn.remat`` are recorded too. Every
  neuron module's (:class:`snnjax.layers.SpikingNeuron`) output is
  fingerprinted as well: a call whose spiking input matches the latest earlier
  neuron output gets that neuron as its ``source``.

  Args:
    model: any Flax linen module.
    variables: its variables.
    inputs: the model's input (one batch).
    T: the number of time steps the model simulates.
    batch_size: B, images in the batch; defaults to the leading axis of the
      first input leaf (pass it for time-major inputs [T, B, ...]).
    method: forwarded to ``model.apply``.
    **apply_kwargs: forwarded to ``model.apply`` (e.g. ``train=False``).

  Raises:
    ValueError: T < 1, or a layer input whose layout fits neither [T, B, ...],
      [T*B, ...] nor [B, ...].
  """
  if T < 1:
    raise ValueError(f"the number of time steps T must be >= 1, got T={T}.")
  if batch_size is None:
    batch_size = int(jax.tree.leaves(inputs)[0].shape[0])
  metadata: list[dict[str, Any]] = []
  neuron_metadata: list[dict[str, Any]] = []
  stats: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
  order = itertools.count()  # call order over layers and neurons

  def store(kind, index, *values):
    stats.setdefault((kind, int(index)), []).append(values)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name != "__call__":
      return out
    name = "/".join(module.scope.path) or type(module).__name__
    if isinstance(module, layers.SpikingNeuron):
      jax.debug.callback(functools.partial(store, "neuron"), len(neuron_metadata),
                         *_fingerprint(out))
      neuron_metadata.append({"name": name, "order": next(order), "size": math.prod(out.shape)})
      return out
    if not isinstance(module, (nn.Conv, nn.Dense)):
      return out
    x = jnp.asarray(args[0] if args else next(iter(kwargs.values())))
    kernel_shape = tuple(jnp.shape(nn.meta.unbox(module.get_variable("params", "kernel"))))
    steps = _time_steps(name, tuple(x.shape), T, batch_size)
    per_step_outputs = math.prod(out.shape) // (batch_size * steps)
    steps_first = x.reshape(steps, -1)
    # A host callback rather than an output, so that layers under nn.remat work too.
    jax.debug.callback(functools.partial(store, "layer"), len(metadata),
                       jnp.all((x == 0) | (x == 1)), jnp.all(steps_first == steps_first[:1]),
                       jnp.mean(x.astype(jnp.float32)), *_fingerprint(x))
    metadata.append({
        "name": name, "kind": "conv" if isinstance(module, nn.Conv) else "dense",
        "input_shape": tuple(x.shape), "kernel_shape": kernel_shape,
        "output_shape": tuple(out.shape), "time_steps": steps,
        "flops": per_step_outputs * math.prod(kernel_shape[:-1]), "order": next(order),
    })
    return out

  def run(variables, inputs):
    with nn.intercept_methods(interceptor):
      model.apply(variables, inputs, method=method, **apply_kwargs)

  jax.jit(run)(variables, inputs)
  jax.effects_barrier()
  neuron_calls = [(m["order"], m["name"], m["size"], _one_execution(stats, "neuron", i, m))
                  for i, m in enumerate(neuron_metadata)]
  calls = []
  for index, m in enumerate(metadata):
    spiking, invariant, rate, *fingerprint = _one_execution(stats, "layer", index, m)
    order = m.pop("order")
    source = (_source(order, math.prod(m["input_shape"]), fingerprint, neuron_calls)
              if spiking else None)
    calls.append(LayerCall(**m, spiking=bool(spiking), time_invariant=bool(invariant),
                           input_rate=float(rate), source=source))
  return calls


def _one_execution(stats: Mapping[tuple[str, int], list[tuple[Any, ...]]], kind: str,
                   index: int, metadata: Mapping[str, Any]) -> tuple[Any, ...]:
  """The values one traced call reported; ValueError unless it ran exactly once."""
  values = stats.get((kind, index), [])
  if len(values) != 1:
    raise ValueError(
        f"{kind} {metadata['name']!r} reported {len(values)} executions for one traced call "
        "(a layer inside nn.scan or a loop?); record_layers needs one execution per call.")
  return values[0]


def neuron_feeds(calls: Sequence[LayerCall]) -> dict[str, list[str]]:
  """{neuron path: the layers that read its spikes, in call order}, from ``LayerCall.source``."""
  feeds: dict[str, list[str]] = {}
  for call in calls:
    if call.source is not None and call.name not in feeds.setdefault(call.source, []):
      feeds[call.source].append(call.name)
  return feeds


def input_label(call: LayerCall) -> str:
  """What a layer reads, as tables print it: "sn1 spikes", "spikes" (source unknown), "analog"."""
  if not call.spiking:
    return "analog"
  return f"{call.source} spikes" if call.source else "spikes"


def at_rates(calls: Sequence[LayerCall], rates: Mapping[str, float]) -> list[LayerCall]:
  """``calls`` with the input rate of each layer that reads a neuron in ``rates`` set to its rate.

  E.g. the firing rates measured over a whole test split (``rates`` keyed by
  neuron path, as :func:`firing_rates` gives them: a neuron called several
  times gives the mean of its calls), in place of the one batch
  :func:`record_layers` ran on; calls reading other inputs are unchanged.
  """
  return [dataclasses.replace(c, input_rate=float(rates[c.source]))
          if c.spiking and c.source in rates else c for c in calls]


@dataclasses.dataclass(frozen=True)
class LayerEnergy:
  """A layer's operations and energy per image over one T-step inference.

  Attributes:
    call: what :func:`record_layers` recorded.
    macs: multiply-accumulates charged (analog input), 0 for a spiking input.
    acs: accumulates charged, FLOPs_l * r * T_l (spiking input), else 0.
    energy_pj: macs * E_MAC + acs * E_AC, in pJ.
    ann_energy_pj: FLOPs_l * E_MAC, in pJ: the same layer in an ANN.
  """

  call: LayerCall
  macs: float
  acs: float
  energy_pj: float
  ann_energy_pj: float


@dataclasses.dataclass(frozen=True)
class EnergyReport:
  """Per-layer energies and totals (pJ per image, one T-step inference)."""

  layers: tuple[LayerEnergy, ...]
  e_mac_pj: float = E_MAC_PJ
  e_ac_pj: float = E_AC_PJ

  @property
  def snn_energy_pj(self) -> float:
    """E_SNN."""
    return sum(layer.energy_pj for layer in self.layers)

  @property
  def ann_energy_pj(self) -> float:
    """E_ANN."""
    return sum(layer.ann_energy_pj for layer in self.layers)

  @property
  def ratio(self) -> float:
    """E_ANN / E_SNN: how many times less energy the SNN needs (inf if E_SNN = 0)."""
    snn = self.snn_energy_pj
    return self.ann_energy_pj / snn if snn > 0 else math.inf


def layer_energy(call: LayerCall, e_mac_pj: float = E_MAC_PJ,
                 e_ac_pj: float = E_AC_PJ) -> LayerEnergy:
  """Charges one layer call by the spiking / analog rule of the module docstring."""
  if call.spiking:
    macs, acs = 0.0, float(call.flops) * call.input_rate * call.time_steps
  else:
    macs, acs = float(call.flops) * (1 if call.time_invariant else call.time_steps), 0.0
  return LayerEnergy(call=call, macs=macs, acs=acs, energy_pj=macs * e_mac_pj + acs * e_ac_pj,
                     ann_energy_pj=call.flops * e_mac_pj)


def estimate(calls: Sequence[LayerCall], e_mac_pj: float = E_MAC_PJ,
             e_ac_pj: float = E_AC_PJ) -> EnergyReport:
  """An :class:`EnergyReport` from recorded layer calls."""
  return EnergyReport(layers=tuple(layer_energy(c, e_mac_pj, e_ac_pj) for c in calls),
                      e_mac_pj=e_mac_pj, e_ac_pj=e_ac_pj)


def energy_report(model: nn.Module, variables: Mapping[str, Any], inputs: Any, *, T: int,
                  batch_size: int | None = None, method: Any = None, e_mac_pj: float = E_MAC_PJ,
                  e_ac_pj: float = E_AC_PJ, **apply_kwargs: Any) -> EnergyReport:
  """Records ``model`` on one batch and estimates its energy per image.

  The arguments are those of :func:`record_layers` and :func:`estimate`, e.g.
  ``energy_report(model, variables, images, T=4, train=False)``.
  """
  calls = record_layers(model, variables, inputs, T=T, batch_size=batch_size, method=method,
                        **apply_kwargs)
  return estimate(calls, e_mac_pj, e_ac_pj)


def format_report(report: EnergyReport, unit: str = "mJ") -> str:
  """The report as a Markdown table, energies in ``unit`` (pJ, nJ, uJ or mJ) per image."""
  if unit not in _UNITS:
    raise ValueError(f"unknown energy unit {unit!r}; allowed: {', '.join(_UNITS)}.")
  scale = _UNITS[unit]
  rows = [
      f"| layer | kind | input | rate | FLOPs/step | MACs | ACs "
      f"| E_SNN ({unit}) | E_ANN ({unit}) |",
      "|---|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for layer in report.layers:
    c = layer.call
    rate = f"{c.input_rate:.4f}" if c.spiking else "-"
    rows.append(
        f"| {c.name} | {c.kind} | {input_label(c)} | {rate} "
        f"| {c.flops:,} | {layer.macs:,.0f} | {layer.acs:,.0f} "
        f"| {layer.energy_pj / scale:.4g} | {layer.ann_energy_pj / scale:.4g} |")
  rows.append(
      f"| total | | | | {sum(l.call.flops for l in report.layers):,} "
      f"| {sum(l.macs for l in report.layers):,.0f} | {sum(l.acs for l in report.layers):,.0f} "
      f"| {report.snn_energy_pj / scale:.4g} | {report.ann_energy_pj / scale:.4g} |")
  rows.append("")
  rows.append(f"E_SNN = {report.snn_energy_pj / scale:.4g} {unit}, "
              f"E_ANN = {report.ann_energy_pj / scale:.4g} {unit}, "
              f"E_ANN / E_SNN = {report.ratio:.3g} "
              f"(E_MAC = {report.e_mac_pj} pJ, E_AC = {report.e_ac_pj} pJ, per image).")
  return "\n".join(rows)
