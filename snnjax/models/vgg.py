"""Plain (non-residual) spiking conv nets: VGG-small (ISNM), VGGSNN, the depth-experiment net.

One module, :class:`ConvNet`, builds them all from a layer plan: a sequence of

    64          conv3x3 stride 1 to 64 channels (then BN and the neuron)
    (128, 2)    conv3x3 stride 2 to 128 channels
    "M" / "A"   2x2 stride-2 max / average pooling, part of the conv layer before it

and a readout: [adaptive avg-pool to ``pool_to`` x ``pool_to``] -> flatten -> FC
classes at every step; logits = mean over T of the FC output current.

Each conv layer (conv, BN, pooling, neuron) is one block for SML heads, numbered
from 1; the first conv layer is block 1.

Two forms of the same computation (``form``):

  "standard": layers pass spikes. Layer l: s_l = SN_l(pool(BN_l(conv_l(s_{l-1})))),
      s_0 = the input; the FC reads s_L. (With ``pool_on="spikes"`` the pooling
      instead follows the neuron, as in VGGSNN.)
  "isnm": the Internal Spiking Neuron Model of "Gradual Surrogate Gradient
      Learning in Deep Spiking Neural Networks" (Chen et al., ICASSP 2022): layers
      pass synaptic currents c_l and the spike train is internal to a layer. Layer
      1 is a plain conv encoder, c_1 = pool(BN_1(conv_1(input))); layer l >= 2 is
      c_l = pool(BN_l(conv_l(SN_{l-1}(c_{l-1})))), so max-pooling and BN act on
      real-valued currents; the output layer is FC(SN_L(c_L)) and the readout is
      its mean current over T, with no extra decoder.

Both forms name their variables alike (conv{l}, bn{l}, sn{l}, fc), so one set of
variables runs either; with ``pool_on="current"`` they compute identical
membranes, spikes and logits (the paper's claim; tests check it). SML heads of
the ISNM form read the firing rate of SN_l(c_l), the spikes made from block l's
current inside layer l + 1: the block output of the standard form.

Full-width parameter counts at 10 classes (no heads): vgg_small 1,777,610 at
32x32 input (FC reads 4x4x256); vggsnn 9,268,746 at 48x48 (FC reads 3x3x512);
depth_net 708,810 at depth 4, +147,712 per extra layer, any input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax

from snnjax import validation
from snnjax.models import surrogate_module
from snnjax.models.common import ModelOutput, SpikingNet, adaptive_avg_pool, pool2d

Array = jax.Array

FORMS = ("standard", "isnm")
POOL_ON = ("current", "spikes")
_POOLS = {"M": "max", "A": "avg"}

#: VGG-small: VGG-9's conv stack ("Enabling Spike-Based Backpropagation for Training
#: Deep Neural Network Architectures", Lee et al. 2020) with its two FC layers
#: replaced by one, max-pooling; snnjax's choice, the GSG paper gives no layer list.
VGG_SMALL = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")
#: VGGSNN of "Temporal Efficient Training of Spiking Neural Network via Gradient
#: Re-weighting" (Deng et al., ICLR 2022), average pooling of spikes.
VGGSNN = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A")
#: Stem of the depth experiment of Surrogate Module Learning (its Fig. 2).
DEPTH_STEM = (64, (64, 2), (128, 2))


def parse_plan(plan: Sequence[Any]) -> tuple[tuple[int, int, str | None], ...]:
  """Layer plan -> ((features, stride, pool or None), ...), one entry per conv layer."""
  layers = []
  for item in plan:
    if isinstance(item, str):
      if item not in _POOLS or not layers or layers[-1][2] is not None:
        raise ValueError(f"bad layer plan {tuple(plan)}: {item!r} must follow a conv layer and be "
                         f"one of {sorted(_POOLS)}.")
      layers[-1] = (*layers[-1][:2], _POOLS[item])
    else:
      features, stride = (item, 1) if isinstance(item, int) else item
      layers.append((int(features), int(stride), None))
  return tuple(layers)


def pool2x2(x: Array, kind: str) -> Array:
  """2x2 stride-2 max or average pooling over H, W of [T, B, H, W, C] (VALID: floors odd sizes)."""
  if min(x.shape[2:4]) < 2:
    raise ValueError(f"feature map {x.shape[2]}x{x.shape[3]} is too small for 2x2 pooling; "
                     "use a larger input.")
  return pool2d(x, kind, 2, 2)


class ConvNet(SpikingNet):
  """A plain spiking conv net; see the module docstring.

  Input [B, H, W, C] images or [T, B, H, W, C] frames; see
  :class:`snnjax.models.common.SpikingNet` for the shared attributes.

  Attributes:
    plan: the layer plan.
    form: "standard" or "isnm".
    pool_on: "current" (pool BN output, before the neuron) or "spikes" (after
      the neuron); "isnm" needs "current".
    pool_to: adaptive average pooling to pool_to x pool_to before the FC, or
      None to flatten the last map as it is (the FC size then depends on the input size).
  """

  plan: tuple[Any, ...] = VGG_SMALL
  form: str = "standard"
  pool_on: str = "current"
  pool_to: int | None = None
  choices: ClassVar = {**SpikingNet.choices, "form": FORMS, "pool_on": POOL_ON}

  def __post_init__(self):
    validation.check(self.form != "isnm" or self.pool_on == "current",
                     "the ISNM form pools currents: it needs pool_on='current'.")
    parse_plan(self.plan)
    super().__post_init__()

  @property
  def num_blocks(self) -> int:
    return len(parse_plan(self.plan))

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> ModelOutput:
    plan = parse_plan(self.plan)
    x = self.encode(x)
    aux = []

    def synapse(l, x):  # conv_l -> BN_l -> [pool on currents]
      features, stride, pool = plan[l - 1]
      c = self.bn(train, f"bn{l}")(self.conv(self.channels(features), 3, stride, f"conv{l}")(x))
      return pool2x2(c, pool) if pool and self.pool_on == "current" else c

    def standard_layer(module, x, l):  # block l: synapse_l -> SN_l [-> pool on spikes]
      x = self.act(f"sn{l}")(synapse(l, x))
      pool = plan[l - 1][2]
      return pool2x2(x, pool) if pool and self.pool_on == "spikes" else x

    def isnm_layer(module, c, l):  # SN_{l-1} (internal to layer l) -> synapse_l
      s = self.act(f"sn{l - 1}")(c)
      return s, synapse(l, s)

    # remat="block": each conv layer is checkpointed (its input kept, the rest recomputed).
    # ISNM's unit is SN_{l-1} + synapse_l; its encoder conv and output neuron are not checkpointed.
    if self.form == "standard":
      layer = self.block(standard_layer, static_argnums=(2,))
      for l in range(1, len(plan) + 1):
        x = layer(self, x, l)
        aux.append(surrogate_module.attach(self, l, x, train))
    else:
      layer = self.block(isnm_layer, static_argnums=(2,))
      c = synapse(1, x)                                   # plain conv encoder
      for l in range(2, len(plan) + 1):
        s, c = layer(self, c, l)                          # neuron internal to layer l
        aux.append(surrogate_module.attach(self, l - 1, s, train))
      x = self.act(f"sn{len(plan)}")(c)                      # internal to the output layer
      aux.append(surrogate_module.attach(self, len(plan), x, train))

    if self.pool_to:
      x = adaptive_avg_pool(x, self.pool_to)
    x = x.reshape(*x.shape[:2], -1)
    return self.output(self.dense(self.num_classes, "fc")(x), aux, train)


def vgg_small(form: str = "isnm", **kwargs: Any) -> ConvNet:
  """VGG-small (ISNM by default): 64-64-M-128-128-M-256-256-256-M, one FC; see :data:`VGG_SMALL`."""
  return ConvNet(plan=VGG_SMALL, form=form, pool_on="current", **kwargs)


def vggsnn(**kwargs: Any) -> ConvNet:
  """VGGSNN for event frames [T, B, H, W, 2]: 64-128-A-256-256-A-512-512-A-512-512-A, FC.

  Average pooling acts on spikes (TET's layout); at 48x48 input the FC reads 3x3x512.
  """
  return ConvNet(plan=VGGSNN, form="standard", pool_on="spikes", **kwargs)


def depth_net(depth: int = 4, ann: bool = False, **kwargs: Any) -> ConvNet:
  """Depth experiment net: 3C64s1-3C64s2-3C128s2, ``depth`` x 3C128s1, adaptive avg-pool 2x2, FC.

  ``ann=True`` uses ReLU instead of spiking neurons (same as spiking=False); the
  input is still repeated over T, so every step's logits are then identical.
  """
  if depth < 0:
    raise ValueError(f"depth (the number of extra 3C128s1 layers) must be >= 0, got {depth}.")
  if ann:
    kwargs["spiking"] = False
  return ConvNet(plan=DEPTH_STEM + (128,) * depth, form="standard", pool_to=2, **kwargs)
