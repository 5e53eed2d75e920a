"""Pieces every model of the zoo shares: output type, layer factory, base module.

Tensors inside a model are time-major NHWC, [T, B, H, W, C]. Flax's Conv,
BatchNorm, Dense and pooling treat the leading [T, B] axes as batch axes, which
is the merged [T*B, ...] view: BatchNorm statistics are shared over time by
default (what the reference code of Surrogate Module Learning does).

Readout (every model): the last layer is a Dense layer applied at every time
step; its output current is ``logits_seq`` [T, B, classes] and ``logits`` is its
mean over T (Direct encoding + rate readout; no extra decoder).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from snnjax import conv as conv_lib
from snnjax import layers, surrogates, validation

Array = jax.Array

#: Convolutions: Kaiming-normal, fan_out mode (PyTorch's kaiming_normal_(mode="fan_out")):
#: w ~ N(0, 2 / (k_h k_w C_out)), untruncated.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

#: PyTorch's default init of nn.Linear and nn.Conv2d weights, kaiming_uniform_(a=sqrt(5)):
#: w ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in (Dense) or k_h k_w C_in (conv);
#: the variance 1/(3 fan_in) is variance_scaling(1/3, "fan_in", "uniform").
torch_kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")

#: Weight initialisations a model can use (see :class:`LayerFactory`).
CONV_INITS = ("kaiming_fan_out", "torch")
DENSE_INITS = ("lecun", "torch")


def torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default bias init: b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def dense(features: int, x: Array, init: str = "lecun", use_bias: bool = True,
          dtype: Any = jnp.float32, name: str | None = None) -> Array:
  """nn.Dense(features) applied to x [..., C_in], initialised as ``init`` says.

  "lecun": Flax's default, w ~ truncated N(0, 1/C_in), b = 0 (snnjax's default).
  "torch": PyTorch's nn.Linear default, w and b ~ U(-1/sqrt(C_in), 1/sqrt(C_in))
  (what the released code of Surrogate Module Learning and of surrogate gradient
  scaling train from: neither re-initialises its Linear layers). Call it
  inside a compact method: the nn.Dense is created there, under ``name``.
  """
  validation.check_known("dense init", init, DENSE_INITS)
  extra = {}
  if init == "torch":
    extra = dict(kernel_init=torch_kernel_init, bias_init=torch_bias_init(x.shape[-1]))
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, name=name, **extra)(x)


def conv_kernel_init(init: str = "kaiming_fan_out") -> nn.initializers.Initializer:
  """The conv weight initialiser named ``init`` (:data:`CONV_INITS`; convs here are bias-free)."""
  validation.check_known("conv init", init, CONV_INITS)
  return conv_init if init == "kaiming_fan_out" else torch_kernel_init

def conv_function(explicit_grads: bool) -> Callable[..., Array] | None:
  """flax.linen.Conv's ``conv_general_dilated``: None (lax's) or :func:`snnjax.conv.explicit_grad_conv`."""
  return conv_lib.explicit_grad_conv if explicit_grads else None


HEAD_PREFIX = "sml_head_"

#: Rematerialisation (activation checkpointing) options; see :class:`SpikingNet`.
REMAT = ("none", "block", "neuron")


@struct.dataclass
class ModelOutput:
  """What every model returns.

  Attributes:
    logits: [B, classes] float32, mean over T of ``logits_seq``.
    logits_seq: [T, B, classes] float32, per-step output current (for TET).
    aux_logits: one [B, classes] float32 per SML head, in increasing block
      order, when called with train=True; () with train=False.
  """

  logits: Array
  logits_seq: Array
  aux_logits: tuple[Array, ...] = ()


def adaptive_avg_pool(x: Array, size: int | tuple[int, int]) -> Array:
  """Average pooling of [..., H, W, C] to [..., h, w, C], any H, W (PyTorch's AdaptiveAvgPool2d).

  Output bin i along an axis of length n covers input rows
  [floor(i n / out), ceil((i + 1) n / out)): bins tile the axis when out
  divides n, overlap by one row when it does not, and repeat rows when out > n.
  A rectangle mean is the mean over rows of the mean over columns, so H and W
  are pooled one after the other.
  """
  out_h, out_w = (size, size) if isinstance(size, int) else size
  return _adaptive_mean_1d(_adaptive_mean_1d(x, -3, out_h), -2, out_w)


def _adaptive_mean_1d(x: Array, axis: int, out: int) -> Array:
  n = x.shape[axis]
  bins = [jax.lax.slice_in_dim(x, (i * n) // out, -(-((i + 1) * n) // out), axis=axis)
          for i in range(out)]
  return jnp.concatenate([jnp.mean(b, axis=axis, keepdims=True) for b in bins], axis=axis)


def pool2d(x: Array, kind: str, window: int, stride: int, pad: int = 0) -> Array:
  """Max or average pooling over H, W of [..., H, W, C], symmetric zero/-inf padding ``pad``.

  Leading axes are folded into one batch axis first (Flax's pooling mis-pads
  inputs with more than one batch axis). Average pooling counts padded cells,
  as PyTorch's count_include_pad=True.
  """
  lead, (h, w, c) = x.shape[:-3], x.shape[-3:]
  fn = {"max": nn.max_pool, "avg": nn.avg_pool}[kind]
  y = fn(x.reshape(-1, h, w, c), (window, window), strides=(stride, stride),
         padding=((pad, pad), (pad, pad)))
  return y.reshape(*lead, *y.shape[1:])


@functools.cache
def remat_class(cls: type[nn.Module], static_argnums: tuple[int, ...] = ()) -> type[nn.Module]:
  """``cls`` under Flax's lifted ``jax.checkpoint`` (cached: one wrapped class per ``cls``).

  ``static_argnums`` count ``self`` as 0 (Flax's convention). The wrapped module
  has the same variables as ``cls`` when given the same ``name``.
  """
  return nn.remat(cls, static_argnums=static_argnums)


def scale_width(channels: int, width: float) -> int:
  """Channels after the width multiplier: max(1, round(channels * width))."""
  return max(1, int(round(channels * width)))


@dataclasses.dataclass
class LayerFactory:
  """How a model builds its layers: neuron, surrogate, compute dtype, BatchNorm, init.

  Every model (:class:`SpikingNet`) is a LayerFactory: these are its fields, and
  it calls ``self.conv(...)``, ``self.act(name)``, ... Blocks that are modules of
  their own (ResNet's :class:`~snnjax.models.resnet.BasicBlock`) get a plain copy,
  :attr:`SpikingNet.layer_factory`. Parameters are float32 whatever ``dtype``
  (the compute / activation dtype) is.

  Attributes:
    neuron: "lif", "if" or "plif" (see :data:`snnjax.layers.NEURONS`).
    neuron_kwargs: arguments of the neuron module (tau, reset, ...), or None.
    surrogate: a parsed surrogate, or anything :func:`snnjax.surrogates.as_surrogate` accepts.
    spiking: False swaps every neuron for ReLU (the ANN twin of the network).
    dtype: activation dtype, e.g. jnp.bfloat16.
    bn_momentum: Flax convention, running = momentum * running + (1 - momentum) * batch
      (PyTorch's momentum=0.1 is 0.9 here).
    bn_per_step: False: one set of statistics and affine parameters per channel,
      shared over time (merged T*B axis). True: one per (time step, channel), as in
      "Revisiting Batch Normalization for Training Low-latency Deep Spiking Neural
      Networks from Scratch" (BNTT); parameters then depend on T.
    remat: "none", "block" or "neuron"; see :class:`SpikingNet`. ``act`` applies
      "neuron"; models apply "block" to their blocks with :meth:`block`.
    conv_init: "kaiming_fan_out" (snnjax's default: :data:`conv_init`, what the SML
      reference code sets) or "torch" (PyTorch's default, :data:`torch_kernel_init`,
      what the released SGS code's convs keep).
    dense_init: "lecun" (Flax's default) or "torch" (PyTorch's nn.Linear default);
      see :func:`dense`.
    explicit_conv_grads: compute every conv's gradients as explicitly transposed
      canonical convolutions (:func:`snnjax.conv.explicit_grad_conv`; same values):
      fast inside loop bodies on XLA:CPU. The SLTT gradient's scan over time sets it.
  """

  neuron: str = "lif"
  neuron_kwargs: Mapping[str, Any] | None = None
  surrogate: Any = "atan"
  spiking: bool = True
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_per_step: bool = False
  remat: str = "none"
  conv_init: str = "kaiming_fan_out"
  dense_init: str = "lecun"
  explicit_conv_grads: bool = False

  def act(self, name: str) -> Callable[[Array], Array]:
    """The activation of a layer: a neuron module scanning over T, or ReLU.

    With remat="neuron" the neuron (its whole scan over T) is rematerialised:
    the backward pass recomputes its internals from its input.
    """
    if not self.spiking:
      return nn.relu
    cls = layers.NEURONS[self.neuron]
    if self.remat == "neuron":
      cls = remat_class(cls)
    return cls(surrogate=self.surrogate, name=name, **dict(self.neuron_kwargs or {}))

  def block(self, target: Any, static_argnums: tuple[int, ...] = ()) -> Any:
    """A model's block, rematerialised when remat="block".

    ``target``: a Module class, or a function whose first argument is the
    calling module (Flax's lifted-function form; submodules it creates keep
    their names). ``static_argnums``: its Python-valued arguments (e.g.
    ``train``, a layer index), counting ``self`` / the module argument as 0.
    """
    if self.remat != "block":
      return target
    if isinstance(target, type):
      return remat_class(target, static_argnums)
    return nn.remat(target, static_argnums=static_argnums)

  def conv(self, features: int, kernel: int, stride: int = 1, name: str | None = None) -> nn.Conv:
    """Bias-free k x k conv with symmetric padding k // 2 (PyTorch's sizes).

    Output size for odd k: floor((n - 1) / stride) + 1.
    """
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), use_bias=False,
                   kernel_init=conv_kernel_init(self.conv_init), dtype=self.dtype, name=name,
                   conv_general_dilated=conv_function(self.explicit_conv_grads))

  def bn(self, train: bool, name: str | None = None, time_axis: bool = True) -> nn.BatchNorm:
    """BatchNorm, scale 1 bias 0 at init, eps 1e-5; batch statistics when train.

    ``time_axis``: the input carries a leading T axis (per-step BN applies to it).
    """
    axis = (0, -1) if (self.bn_per_step and time_axis) else -1
    return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
                        axis=axis, dtype=self.dtype, name=name)

  def dense(self, features: int, name: str | None = None,
            use_bias: bool = True) -> Callable[[Array], Array]:
    """Dense layer computing in ``dtype``, initialised as ``dense_init`` says (:func:`dense`).

    Returns a function of x (the torch init's bias bound needs x's features);
    call it inside the model's compact method.
    """
    return functools.partial(dense, features, init=self.dense_init, use_bias=use_bias,
                             dtype=self.dtype, name=name)

  def validate(self) -> None:
    """Raises ValueError for an unknown neuron kind, neuron argument, surrogate or remat,
    or an SGS surrogate whose explicit threshold is not the neuron's."""
    validation.check_known("remat", self.remat, REMAT)
    conv_kernel_init(self.conv_init)
    validation.check_known("dense init", self.dense_init, DENSE_INITS)
    neuron_kwargs = dict(self.neuron_kwargs or {})
    if "surrogate" in neuron_kwargs:
      raise ValueError("give the surrogate as the model's surrogate=..., not in neuron_kwargs.")
    module = layers.neuron(self.neuron, surrogate=self.surrogate, **neuron_kwargs)
    surrogates.with_threshold(surrogates.as_surrogate(self.surrogate), module.v_threshold)


def check_head_indices(sml_heads: Any, num_blocks: int, model: str) -> None:
  """Raises ValueError unless sml_heads is a sequence of distinct ints in 1..num_blocks."""
  try:
    indices = [operator.index(i) for i in sml_heads]
  except TypeError:
    raise ValueError(f"sml_heads must be a sequence of block indices, got {sml_heads!r}.") from None
  bad = [i for i in indices if not 1 <= i <= num_blocks]
  if bad:
    raise ValueError(
        f"SML head index(es) {bad} out of range for {model}: it has {num_blocks} blocks, "
        f"valid indices are 1..{num_blocks} (a head at i follows block i, counted from 1).")
  if len(set(indices)) != len(indices):
    raise ValueError(f"sml_heads {tuple(sml_heads)} has repeated indices.")


class SpikingNet(nn.Module, LayerFactory):
  """Fields and helpers shared by every model of the zoo (a base class, not a model).

  A :class:`LayerFactory`: its layer settings are fields of every model.

  Attributes:
    num_classes: output classes.
    T: time steps; static images [B, H, W, C] are repeated T times, frames
      [T, B, H, W, C] must have T steps.
    sml_heads: 1-based indices of the blocks after which an SML head is attached
      (see :mod:`snnjax.models.surrogate_module`); () for none.
    head_channels: k, the channel width of the SML heads.
    head_bias: the heads' FC512 has a bias (True, as the SML reference code).
    conv_init, dense_init: weight initialisation of the SNN and the heads; see
      :class:`LayerFactory`.
    neuron, neuron_kwargs, surrogate, spiking, dtype, bn_momentum, bn_per_step:
      see :class:`LayerFactory`.
    width: width multiplier for every SNN layer (not the heads).
    remat: rematerialisation (``flax.linen.remat``, i.e. ``jax.checkpoint``),
      trading compute for memory; the variables and the results are the same
      for every choice:

        "none":   keep every activation the backward pass needs (fastest).
        "block":  keep only each block's input (ResNet: residual block; plain
                  nets: conv layer with its BN, pooling and neuron) and
                  recompute the block's internals in the backward pass.
                  The stem, readout and SML heads are not rematerialised.
        "neuron": recompute each neuron layer's scan over T (its charges,
                  spikes and surrogate inputs) from its input current.
                  Convs and BN keep their activations. No-op with spiking=False.

      Activation memory stays linear in T for every choice (BatchNorm over
      the merged T*B axis needs all T steps of a layer at once).
  """

  num_classes: int = 10
  T: int = 4
  sml_heads: tuple[int, ...] = ()
  head_channels: int = 256
  head_bias: bool = True
  width: float = 1.0

  #: Model options that take one of a few names: field -> allowed names, checked at
  #: construction (subclasses name theirs).
  choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"remat": REMAT}

  def __post_init__(self):
    for field, allowed in self.choices.items():
      validation.check_known(field, getattr(self, field), allowed)
    if self.T < 1:
      raise ValueError(f"T must be >= 1 time step, got T={self.T}.")
    if not self.width > 0:
      raise ValueError(f"width multiplier must be > 0, got width={self.width}.")
    check_head_indices(self.sml_heads, self.num_blocks, type(self).__name__)
    super().__post_init__()

  @property
  def num_blocks(self) -> int:
    """Number of blocks SML heads can follow (indices 1..num_blocks)."""
    raise NotImplementedError

  @property
  def layer_factory(self) -> LayerFactory:
    """This model's layer settings as a plain :class:`LayerFactory` (for block modules)."""
    return LayerFactory(**{f.name: getattr(self, f.name)
                           for f in dataclasses.fields(LayerFactory)})

  def channels(self, channels: int) -> int:
    """``channels`` of the full-width network at this model's ``width`` (:func:`scale_width`)."""
    return scale_width(channels, self.width)

  def encode(self, x: Array) -> Array:
    """Input [B, H, W, C] (repeated over T) or [T, B, H, W, C] -> [T, B, H, W, C] in ``dtype``."""
    return layers.time_major_input(jnp.asarray(x), self.T).astype(self.dtype)

  def output(self, logits_seq: Array, aux: list[Array | None], train: bool) -> ModelOutput:
    logits_seq = logits_seq.astype(jnp.float32)
    aux_logits = tuple(a for a in aux if a is not None) if train else ()
    return ModelOutput(logits=layers.time_mean(logits_seq), logits_seq=logits_seq,
                       aux_logits=aux_logits)
