"""NIR (the Neuromorphic Intermediate Representation) export and import.

    graph = snnjax.nir.export(model, variables, input_shape=(28, 28, 1))    # nir.NIRGraph
    nir.write("net.nir", graph)
    model, variables = snnjax.nir.load(nir.read("net.nir"), T=4)
    out = model.apply(variables, images)       # out.logits, out.logits_seq as the zoo's

What exports. Plain conv nets (:class:`snnjax.models.vgg.ConvNet`: ``depth_net``,
``vggsnn`` and ConvNets built with average pooling) and networks :func:`load` built:
conv -> BatchNorm (folded into the conv's weights and bias, eval statistics) ->
[average pooling] -> LIF / PLIF / IF -> ... -> [adaptive average pooling to an exact
divisor] -> flatten -> affine. Both forms (standard, ISNM) export: with pooling on
currents they are the same chain. Refused, each with the reason: ResNets (the
exporter does not write residual sums yet), max pooling (NIR has none), soft
reset (NIR neurons reset to v_reset), per-time-step BatchNorm (its statistics
depend on t), ANNs (no neurons), an adaptive pooling that does not divide the map.
SML heads are not part of the deployed network and are left out.

Time. NIR neurons are continuous-time; snnjax's are their forward-Euler steps of
length ``dt`` (seconds, default 1e-4, the step snnTorch's importer assumes), one
step per model time step. With k = 1/tau (tau in steps) and x the input current:

    snnjax LIF, decay_input=False: h = v - (v - v_reset) k + x
        NIR LIF  tau * dv/dt = (v_leak - v) + R I:  tau_NIR = tau dt, v_leak = v_reset, R = tau
    snnjax LIF, decay_input=True:  h = v + (x - (v - v_reset)) k:   the same with R = 1
    snnjax IF:                     h = v + x;  NIR IF dv/dt = R I:   R = 1 / dt

and v_threshold, v_reset (hard reset) carry over. PLIF exports its learned
tau = 1 + exp(-w). Both directions use these maps, so NIR -> snnjax -> NIR
returns the same arrays. The graph's metadata records dt and that the readout is
the mean over time of the output node (snnjax's logits). One difference NIR
cannot state: snnjax fires at v >= v_threshold, NIR's equations at v > v_threshold
(only an exact tie differs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import nir
import numpy as np

from snnjax import layers, neurons, surrogates
from snnjax.models import common, vgg
from snnjax.models.common import ModelOutput

Array = jax.Array

#: The Euler step snnTorch's NIR importer assumes (seconds).
DEFAULT_DT = 1e-4
BN_EPSILON = 1e-5
#: A neuron step's per-neuron NIR parameters (IF: tau unused).
NEURON_PARAMETERS = ("tau", "r", "v_threshold", "v_reset")


# --- The chain both directions share ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
  """One node of an exported chain (static description; arrays live in ``params``).

  kind: "conv" | "affine" | "avg_pool" | "sum_pool" | "flatten" | "lif" | "if".
  options: static settings, e.g. (("stride", 1), ("padding", 1)) or (("window", 2),).
  """

  kind: str
  name: str
  options: tuple[tuple[str, Any], ...] = ()

  def option(self, key: str) -> Any:
    return dict(self.options)[key]


class NIRNet(nn.Module):
  """A network read from a NIR graph: its chain of steps over [T, B, H, W, C].

  Neuron steps run snnjax's neurons (hard reset, decay_input=False) with tau / dt
  time steps on the input current scaled by R dt / tau (LIF) or R dt (IF). Their
  per-neuron NIR parameters (tau in seconds, r, v_threshold, v_reset; [H, W, C])
  are the ``"neuron"`` collection, so exporting again returns them unchanged. The
  variables come from :func:`load` (``init`` has nothing to draw them from).
  """

  steps: tuple[Step, ...]
  T: int = 4
  dt: float = DEFAULT_DT
  surrogate: Any = "atan"

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> ModelOutput:
    del train  # nothing here differs between training and evaluation
    x = layers.time_major_input(jnp.asarray(x, jnp.float32), self.T)
    surrogate = surrogates.as_surrogate(self.surrogate)
    for step in self.steps:
      x = _run_step(self, step, x, surrogate, self.dt)
    x = x.astype(jnp.float32)
    return ModelOutput(logits=layers.time_mean(x), logits_seq=x)


def _run_step(module: nn.Module, step: Step, x: Array, surrogate, dt: float) -> Array:
  if step.kind == "conv":
    kernel = module.get_variable("params", f"{step.name}_kernel")
    bias = module.get_variable("params", f"{step.name}_bias")
    pad = step.option("padding")
    stride = step.option("stride")
    lead = x.shape[:2]
    y = jax.lax.conv_general_dilated(
        x.reshape(-1, *x.shape[2:]), kernel, (stride, stride), ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return (y + bias).reshape(*lead, *y.shape[1:])
  if step.kind == "affine":
    kernel = module.get_variable("params", f"{step.name}_kernel")
    bias = module.get_variable("params", f"{step.name}_bias")
    return x @ kernel + bias
  if step.kind in ("avg_pool", "sum_pool"):
    window = step.option("window")
    y = common.pool2d(x, "avg", window, window)
    return y * window * window if step.kind == "sum_pool" else y
  if step.kind == "flatten":
    # NIR flattens channel-first (C, H, W); snnjax's maps are [T, B, H, W, C].
    return jnp.moveaxis(x, -1, 2).reshape(*x.shape[:2], -1)
  values = {k: module.get_variable("neuron", f"{step.name}_{k}")
            for k in NEURON_PARAMETERS}
  kwargs = dict(v_threshold=values["v_threshold"], v_reset=values["v_reset"], reset="hard",
                surrogate=surrogate, unroll=True)
  if step.kind == "lif":
    return neurons.lif(x * (values["r"] * dt / values["tau"]), tau=values["tau"] / dt,
                       decay_input=False, **kwargs)[0]
  return neurons.if_(x * (values["r"] * dt), **kwargs)[0]


# --- Export ----------------------------------------------------------------------------------


def export(model: nn.Module, variables: Mapping[str, Any], input_shape: Sequence[int],
           dt: float = DEFAULT_DT) -> nir.NIRGraph:
  """The NIR graph of ``model`` with ``variables`` (SML heads left out).

  Args:
    model: a zoo ConvNet (see the module docstring for which export) or a :class:`NIRNet`.
    variables: its variables (params, batch_stats, surrogate, ...).
    input_shape: one time step's input (H, W, C), e.g. (28, 28, 1) or event frames (48, 48, 2).
    dt: the Euler step in seconds that one model time step stands for.

  Returns:
    A ``nir.NIRGraph``: "input" -> ... -> "output", nodes named after snnjax's layers.

  Raises:
    ValueError: a model or option NIR cannot express, naming it and why.
  """
  if not dt > 0:
    raise ValueError(f"dt={dt!r} must be > 0 seconds.")
  if len(input_shape) != 3:
    raise ValueError(f"input_shape={tuple(input_shape)} must be one step's (H, W, C).")
  if isinstance(model, NIRNet) and model.dt != dt:
    raise ValueError(f"this network was loaded with dt={model.dt}; export it with that dt, "
                     f"not dt={dt}.")
  steps, arrays = (_nirnet_chain(model, variables) if isinstance(model, NIRNet)
                   else _convnet_chain(model, variables, tuple(input_shape), dt))
  return _graph(steps, arrays, tuple(input_shape), dt)


def _check_exportable(model: nn.Module) -> None:
  name = type(model).__name__
  if not isinstance(model, vgg.ConvNet):
    why = ("its residual sums are not written by snnjax's exporter yet"
           if name == "ResNet" else "it is not a plain conv net")
    raise ValueError(f"cannot export a {name} to NIR: {why}. Exportable: ConvNet models "
                     "(depth_net, vggsnn, average-pooling plans) and networks "
                     "snnjax.nir.load built.")
  problems = []
  if not model.spiking:
    problems.append("spiking=False is an ANN (no neurons to express)")
  neuron_kwargs = dict(model.neuron_kwargs or {})
  if neuron_kwargs.get("reset", "hard") != "hard":
    problems.append("reset='soft' (NIR neurons reset to v_reset; use reset='hard')")
  if model.bn_per_step:
    problems.append("bn_per_step=True (BatchNorm statistics per time step cannot fold into "
                    "one conv)")
  if any(pool == "max" for _, _, pool in vgg.parse_plan(model.plan)):
    problems.append("max pooling (NIR has average and sum pooling only; use 'A' in the plan)")
  if problems:
    raise ValueError(f"cannot export this {model.neuron.upper()} ConvNet to NIR: "
                     + "; ".join(problems) + ".")


def _neuron_settings(model: vgg.ConvNet) -> dict[str, Any]:
  cls = layers.NEURONS[model.neuron]
  defaults = {f.name: f.default for f in dataclasses.fields(cls)
              if f.name not in ("parent", "name")}
  return {**defaults, **dict(model.neuron_kwargs or {})}


def _convnet_chain(model: vgg.ConvNet, variables: Mapping[str, Any],
                   input_shape: tuple[int, int, int], dt: float
                   ) -> tuple[list[Step], dict[str, np.ndarray]]:
  """The steps and arrays (snnjax layout) of a ConvNet, BatchNorm folded."""
  _check_exportable(model)
  params, stats = variables["params"], variables.get("batch_stats", {})
  settings = _neuron_settings(model)
  h, w, _ = input_shape
  steps: list[Step] = []
  arrays: dict[str, np.ndarray] = {}
  plan = vgg.parse_plan(model.plan)
  for l, (_, stride, pool) in enumerate(plan, start=1):
    kernel = np.asarray(params[f"conv{l}"]["kernel"], np.float32)
    scale, shift = _folded_bn(params[f"bn{l}"], stats[f"bn{l}"])
    steps.append(Step("conv", f"conv{l}", (("stride", stride), ("padding", kernel.shape[0] // 2))))
    arrays[f"conv{l}_kernel"], arrays[f"conv{l}_bias"] = kernel * scale, shift
    h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
    if pool and model.pool_on == "current":
      steps.append(Step("avg_pool", f"pool{l}", (("window", 2),)))
      h, w = h // 2, w // 2
    steps.append(Step(_neuron_kind(model), f"sn{l}"))
    arrays.update(_neuron_arrays(model, params, settings, f"sn{l}", (h, w, kernel.shape[-1]),
                                 dt))
    if pool and model.pool_on == "spikes":
      steps.append(Step("avg_pool", f"pool{l}", (("window", 2),)))
      h, w = h // 2, w // 2
  if model.pool_to:
    if h % model.pool_to or w % model.pool_to or h // model.pool_to != w // model.pool_to:
      raise ValueError(f"cannot export the adaptive pooling of a {h}x{w} map to "
                       f"{model.pool_to}x{model.pool_to} to NIR: it is an average pooling only "
                       "when the size divides the map in equal squares; change the input size.")
    steps.append(Step("avg_pool", "readout_pool", (("window", h // model.pool_to),)))
    h = w = model.pool_to
  steps.append(Step("flatten", "flatten"))
  steps.append(Step("affine", "fc"))
  kernel = np.asarray(params["fc"]["kernel"], np.float32)     # rows in [H, W, C] order
  channels = kernel.shape[0] // (h * w)
  arrays["fc_kernel"] = (kernel.reshape(h, w, channels, -1).transpose(2, 0, 1, 3)
                         .reshape(kernel.shape))              # rows in NIR's (C, H, W) order
  arrays["fc_bias"] = np.asarray(params["fc"]["bias"], np.float32)
  return steps, arrays


def _folded_bn(bn_params: Mapping[str, Any], bn_stats: Mapping[str, Any]):
  """(scale per output channel, bias): BN(y) = scale * y + bias with eval statistics."""
  gamma = np.asarray(bn_params["scale"], np.float32)
  beta = np.asarray(bn_params["bias"], np.float32)
  mean = np.asarray(bn_stats["mean"], np.float32)
  var = np.asarray(bn_stats["var"], np.float32)
  scale = gamma / np.sqrt(var + np.float32(BN_EPSILON))
  return scale, beta - scale * mean


def _neuron_kind(model: vgg.ConvNet) -> str:
  return "if" if model.neuron == "if" else "lif"


def _neuron_arrays(model: vgg.ConvNet, params: Mapping[str, Any], settings: Mapping[str, Any],
                   name: str, shape: tuple[int, int, int], dt: float) -> dict[str, np.ndarray]:
  """One layer's NIR parameters (tau in seconds, r, v_threshold, v_reset), each [H, W, C]."""
  full = lambda value: np.full(shape, value, np.float32)
  if model.neuron == "if":
    tau, r = 1.0, 1 / dt                    # dv/dt = R I, one step: v += x
  else:
    tau = (1 + math.exp(-float(params[name]["w"])) if model.neuron == "plif"
           else float(settings["tau"]))
    r = 1.0 if settings["decay_input"] else tau
    tau = tau * dt
  return {f"{name}_tau": full(tau), f"{name}_r": full(r),
          f"{name}_v_threshold": full(settings["v_threshold"]),
          f"{name}_v_reset": full(settings["v_reset"])}


def _nirnet_chain(model: NIRNet, variables: Mapping[str, Any]):
  arrays = {k: np.asarray(v) for k, v in {**variables["params"], **variables["neuron"]}.items()}
  return list(model.steps), arrays


def _chw(array: np.ndarray) -> np.ndarray:
  """A per-neuron array [H, W, C] in NIR's channel-first layout (C, H, W)."""
  return np.ascontiguousarray(np.moveaxis(array, -1, 0))


def _graph(steps: list[Step], arrays: Mapping[str, np.ndarray],
           input_shape: tuple[int, int, int], dt: float) -> nir.NIRGraph:
  h, w, c = input_shape
  nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([c, h, w])})}
  shape = (c, h, w)
  for step in steps:
    nodes[step.name], shape = _node(step, arrays, shape, dt)
  nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
  names = list(nodes)
  metadata = {"source": "snnjax", "dt": dt, "discretisation": "forward Euler, one step per "
              "time step", "readout": "mean over time steps of the output node"}
  return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])), metadata=metadata)


def _node(step: Step, arrays: Mapping[str, np.ndarray], shape: tuple[int, ...], dt: float):
  """(NIR node, output shape channel-first) of one step."""
  a = lambda key: arrays[f"{step.name}_{key}"]
  if step.kind == "conv":
    kernel = a("kernel")                       # [kh, kw, C_in, C_out]
    stride, pad = step.option("stride"), step.option("padding")
    _, h, w = shape
    node = nir.Conv2d(input_shape=(h, w), weight=np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)),
                      stride=stride, padding=pad, dilation=1, groups=1, bias=a("bias"))
    out_h = (h + 2 * pad - kernel.shape[0]) // stride + 1
    out_w = (w + 2 * pad - kernel.shape[1]) // stride + 1
    return node, (kernel.shape[-1], out_h, out_w)
  if step.kind in ("avg_pool", "sum_pool"):
    window = step.option("window")
    cls = nir.AvgPool2d if step.kind == "avg_pool" else nir.SumPool2d
    node = cls(kernel_size=np.array([window, window]), stride=np.array([window, window]),
               padding=np.array([0, 0]))
    return node, (shape[0], shape[1] // window, shape[2] // window)
  if step.kind == "flatten":
    return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0), (int(np.prod(shape)),)
  if step.kind == "affine":
    return nir.Affine(weight=np.ascontiguousarray(a("kernel").T), bias=a("bias")), (a("bias").size,)
  threshold, reset = _chw(a("v_threshold")), _chw(a("v_reset"))
  if step.kind == "lif":
    node = nir.LIF(tau=_chw(a("tau")), r=_chw(a("r")), v_leak=reset.copy(),
                   v_threshold=threshold, v_reset=reset)
  else:
    node = nir.IF(r=_chw(a("r")), v_threshold=threshold, v_reset=reset)
  return node, shape


# --- Import ----------------------------------------------------------------------------------


def load(graph: nir.NIRGraph, T: int = 4, dt: float | None = None,
         surrogate: Any = "atan") -> tuple[NIRNet, dict[str, Any]]:
  """A runnable snnjax network and its variables from a NIR graph.

  Args:
    graph: a chain Input -> (Conv2d | Affine | Linear | AvgPool2d | SumPool2d | Flatten |
      LIF | IF)* -> Output, e.g. from :func:`export` or another NIR producer.
    T: time steps (static images are repeated T times).
    dt: the Euler step in seconds; default the graph's metadata "dt", else 1e-4.
    surrogate: the spike surrogate for fine-tuning (any spec snnjax.surrogates takes).

  Returns:
    ``(model, variables)``: ``model.apply(variables, x)`` with x [B, H, W, C] or
    [T, B, H, W, C] gives a ModelOutput (logits: the output's mean over T).

  Raises:
    ValueError: a graph that is not a chain, a node type snnjax cannot run, or a LIF
      whose v_leak differs from its v_reset (snnjax's LIF rests at its reset potential).
  """
  dt = float(graph.metadata.get("dt", DEFAULT_DT) if dt is None else dt)
  order = _chain(graph)
  steps, params, neuron_state = [], {}, {}
  for name in order:
    node = graph.nodes[name]
    kind, options, node_params, node_state = _read_node(name, node)
    steps.append(Step(kind, name, options))
    params.update(node_params)
    neuron_state.update(node_state)
  model = NIRNet(steps=tuple(steps), T=T, dt=dt, surrogate=surrogate)
  variables = {"params": {k: jnp.asarray(v) for k, v in params.items()},
               "neuron": {k: jnp.asarray(v) for k, v in neuron_state.items()}}
  return model, variables


def _chain(graph: nir.NIRGraph) -> list[str]:
  """The nodes between Input and Output, in order; ValueError unless the graph is a chain."""
  following: dict[str, str] = {}
  for source, target in graph.edges:
    if source in following:
      raise ValueError(f"NIR node {source!r} feeds several nodes: snnjax.nir.load reads chains "
                       "only (no branches or residual sums).")
    following[source] = target
  starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
  if len(starts) != 1:
    raise ValueError(f"a NIR graph for snnjax.nir.load needs one Input node, found {starts}.")
  order, current, seen = [], starts[0], set()
  while current in following:
    current = following[current]
    if current in seen:
      raise ValueError(f"NIR graph has a cycle through {current!r}: recurrent graphs are not "
                       "supported by snnjax.nir.load.")
    seen.add(current)
    if isinstance(graph.nodes[current], nir.Output):
      return order
    order.append(current)
  raise ValueError("the NIR graph's chain does not end in an Output node.")


def _uniform(array: Any, name: str, what: str) -> int:
  values = np.unique(np.asarray(array))
  if values.size != 1:
    raise ValueError(f"NIR node {name!r}: {what} {np.asarray(array).tolist()} must be equal along "
                     "both axes for snnjax.nir.load.")
  return int(values[0])


def _hwc(array: Any, dtype=np.float32) -> np.ndarray:
  """A per-neuron NIR array (C, H, W) (or (N,)) in snnjax's layout [H, W, C]."""
  array = np.asarray(array, dtype)
  return np.moveaxis(array, 0, -1) if array.ndim == 3 else array


def _read_node(name: str, node: nir.NIRNode):
  """(kind, options, params, neuron state) of one NIR node."""
  if isinstance(node, nir.Conv2d):
    if _uniform(node.dilation, name, "dilation") != 1 or node.groups != 1:
      raise ValueError(f"NIR node {name!r}: dilated or grouped convolutions are not supported.")
    if isinstance(node.padding, str):
      raise ValueError(f"NIR node {name!r}: padding {node.padding!r}; give it as numbers.")
    weight = np.asarray(node.weight, np.float32)
    bias = np.zeros(weight.shape[0], np.float32) if node.bias is None else node.bias
    options = (("stride", _uniform(node.stride, name, "stride")),
               ("padding", _uniform(node.padding, name, "padding")))
    return "conv", options, {f"{name}_kernel": weight.transpose(2, 3, 1, 0),
                             f"{name}_bias": np.asarray(bias, np.float32)}, {}
  if isinstance(node, (nir.Affine, nir.Linear)):
    weight = np.asarray(node.weight, np.float32)
    bias = node.bias if isinstance(node, nir.Affine) else np.zeros(weight.shape[0])
    return "affine", (), {f"{name}_kernel": weight.T.copy(),
                          f"{name}_bias": np.asarray(bias, np.float32)}, {}
  if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
    window = _uniform(node.kernel_size, name, "kernel_size")
    if _uniform(node.stride, name, "stride") != window or _uniform(node.padding, name,
                                                                   "padding") != 0:
      raise ValueError(f"NIR node {name!r}: pooling must have stride = kernel size and no "
                       "padding for snnjax.nir.load.")
    kind = "avg_pool" if isinstance(node, nir.AvgPool2d) else "sum_pool"
    return kind, (("window", window),), {}, {}
  if isinstance(node, nir.Flatten):
    return "flatten", (), {}, {}
  if isinstance(node, nir.LIF):
    v_reset = node.v_reset if node.v_reset is not None else np.zeros_like(node.v_leak)
    if not np.array_equal(np.asarray(node.v_leak), np.asarray(v_reset)):
      raise ValueError(f"NIR node {name!r}: v_leak differs from v_reset; snnjax's LIF rests at "
                       "its reset potential.")
    state = {"tau": _hwc(node.tau), "r": _hwc(node.r), "v_threshold": _hwc(node.v_threshold),
             "v_reset": _hwc(v_reset)}
    return "lif", (), {}, {f"{name}_{k}": v for k, v in state.items()}
  if isinstance(node, nir.IF):
    v_reset = node.v_reset if node.v_reset is not None else np.zeros_like(node.v_threshold)
    r = _hwc(node.r)
    state = {"tau": np.ones_like(r), "r": r, "v_threshold": _hwc(node.v_threshold),
             "v_reset": _hwc(v_reset)}
    return "if", (), {}, {f"{name}_{k}": v for k, v in state.items()}
  raise ValueError(f"NIR node {name!r} is a {type(node).__name__}, which snnjax.nir.load does not "
                   "run; it reads Conv2d, Affine, Linear, AvgPool2d, SumPool2d, Flatten, LIF, IF.")
