"""Spiking ResNets: ResNet-18/34 (CIFAR or ImageNet stem), ResNet-19, SEW-ResNet-34.

One block builder, :class:`BasicBlock`, serves every net; ``connection`` picks
where the shortcut joins:

    "spiking" (Spiking ResNet):  out = SN(BN(conv2(SN(BN(conv1(x))))) + shortcut(x))
    "add" (SEW ADD):             out = SN(BN(conv2(SN(BN(conv1(x)))))) + shortcut(x)

SEW is "Deep Residual Learning in Spiking Neural Networks" (Fang et al.,
NeurIPS 2021): the shortcut is added to the block's output spikes, so block
outputs are spike counts (non-negative integers), not binary. The shortcut is
the identity, or conv1x1(stride)-BN when the shape changes (followed by SN for
SEW, so both terms of the sum are spikes).

Stems (``stem``):
  "cifar":            conv3x3 s1 - BN - SN, no max-pool.
  "imagenet":         conv7x7 s2 - BN - SN, and stride 2 in the first stage
                      instead of a max-pool (snnjax's choice for both ImageNet nets).
  "imagenet_maxpool": conv7x7 s2 - BN - SN - max-pool 3x3 s2 (pad 1), first stage
                      stride 1 (torchvision / the original SEW-ResNet layout).

Readout: global average pool over H, W at every step -> [FC hidden -> SN] -> FC
classes; logits = mean over T of the per-step FC output.

Full-width parameter counts (``jax.eval_shape`` on init, no heads; LIF/IF
neurons have none, PLIF one per neuron layer):
  resnet18, CIFAR stem, 10 classes:             11,173,962
  resnet19, 10 classes:                         12,630,858
  resnet34, CIFAR stem, 10 classes:             21,282,122
  resnet18, ImageNet stem, 1000 classes:        11,693,736
  resnet34, ImageNet stem, 1000 classes:        21,801,896
  sew_resnet34, ImageNet stem, 1000 classes:    21,801,896
The "imagenet_maxpool" stem gives torchvision's counts exactly (11,689,512 and
21,797,672); the "imagenet" stem's stride-2 first stage needs one more 64->64
conv1x1 + BN shortcut (+4,224).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from snnjax import validation
from snnjax.models import surrogate_module
from snnjax.models.common import LayerFactory, ModelOutput, SpikingNet, pool2d

Array = jax.Array

STEMS = ("cifar", "imagenet", "imagenet_maxpool")
CONNECTIONS = ("spiking", "add")


class BasicBlock(nn.Module):
  """conv3x3(stride)-BN-SN-conv3x3-BN joined with the shortcut.

  [T, B, H, W, C] -> [T, B, H / stride, W / stride, features] (sizes rounded up).
  """

  features: int
  stride: int
  factory: LayerFactory
  connection: str = "spiking"

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    make = self.factory
    y = make.act("sn1")(make.bn(train, "bn1")(make.conv(self.features, 3, self.stride, "conv1")(x)))
    y = make.bn(train, "bn2")(make.conv(self.features, 3, 1, "conv2")(y))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = make.bn(train, "bn_down")(make.conv(self.features, 1, self.stride, "conv_down")(x))
      if self.connection == "add":
        shortcut = make.act("sn_down")(shortcut)
    if self.connection == "add":
      return make.act("sn2")(y) + shortcut
    return make.act("sn2")(y + shortcut)


class ResNet(SpikingNet):
  """A spiking ResNet of :class:`BasicBlock` stages; see the module docstring.

  Input [B, H, W, C] images or [T, B, H, W, C] frames; see
  :class:`snnjax.models.common.SpikingNet` for the shared attributes.

  Attributes:
    stage_blocks: blocks per stage, e.g. (2, 2, 2, 2).
    stage_widths: channels per stage (before the width multiplier).
    stem_width: channels of the stem conv.
    stem: one of :data:`STEMS`.
    connection: "spiking" or "add" (SEW); see :class:`BasicBlock`.
    hidden: features of a spiking FC layer before the classifier (ResNet-19: 256), or None.
  """

  stage_blocks: tuple[int, ...] = (2, 2, 2, 2)
  stage_widths: tuple[int, ...] = (64, 128, 256, 512)
  stem_width: int = 64
  stem: str = "cifar"
  connection: str = "spiking"
  hidden: int | None = None
  choices: ClassVar = {**SpikingNet.choices, "stem": STEMS, "connection": CONNECTIONS}

  def __post_init__(self):
    validation.check(len(self.stage_blocks) == len(self.stage_widths),
                     f"stage_blocks {self.stage_blocks} and stage_widths {self.stage_widths} "
                     "need the same length.")
    super().__post_init__()

  @property
  def num_blocks(self) -> int:
    return sum(self.stage_blocks)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> ModelOutput:
    x = self.encode(x)
    kernel, stride = (3, 1) if self.stem == "cifar" else (7, 2)
    x = self.conv(self.channels(self.stem_width), kernel, stride, "stem_conv")(x)
    x = self.act("stem_sn")(self.bn(train, "stem_bn")(x))
    if self.stem == "imagenet_maxpool":
      x = pool2d(x, "max", 3, 2, pad=1)
    aux = []
    index = 0
    block = self.block(BasicBlock, static_argnums=(2,))  # remat="block": checkpoint each block
    for stage, (blocks, width) in enumerate(zip(self.stage_blocks, self.stage_widths)):
      first_stride = 1 if stage == 0 and self.stem != "imagenet" else 2
      for b in range(blocks):
        index += 1
        x = block(self.channels(width), first_stride if b == 0 else 1, self.layer_factory,
                  self.connection,
                  name=f"layer{stage + 1}_{b}")(x, train)
        aux.append(surrogate_module.attach(self, index, x, train))
    x = jnp.mean(x, axis=(2, 3))
    if self.hidden:
      x = self.act("fc_hidden_sn")(self.dense(self.channels(self.hidden), "fc_hidden")(x))
    return self.output(self.dense(self.num_classes, "fc")(x), aux, train)


def resnet18(stem: str = "cifar", **kwargs: Any) -> ResNet:
  """Spiking ResNet-18: BasicBlocks 2-2-2-2, widths 64/128/256/512, stem 64."""
  return ResNet(stage_blocks=(2, 2, 2, 2), stage_widths=(64, 128, 256, 512), stem=stem, **kwargs)


def resnet34(stem: str = "cifar", **kwargs: Any) -> ResNet:
  """Spiking ResNet-34: BasicBlocks 3-4-6-3, widths 64/128/256/512, stem 64."""
  return ResNet(stage_blocks=(3, 4, 6, 3), stage_widths=(64, 128, 256, 512), stem=stem, **kwargs)


def resnet19(**kwargs: Any) -> ResNet:
  """ResNet-19 (tdBN family) as in METHODS section 6: stem conv3x3 64; blocks
  3x128, 3x256 s2, 2x512 s2; avgpool -> FC256 -> SN -> FC classes.

  ("Going Deeper With Directly-Trained Larger Spiking Neural Networks", Zheng et
  al., AAAI 2021, uses a 128-channel stem; snnjax follows the 64-channel stem of
  the surrogate-gradient-scaling paper's model, 12.63 M parameters at 10 classes.)
  """
  return ResNet(stage_blocks=(3, 3, 2), stage_widths=(128, 256, 512), stem="cifar", hidden=256,
                **kwargs)


def sew_resnet34(stem: str = "imagenet", **kwargs: Any) -> ResNet:
  """SEW-ResNet-34 with ADD connections (Fang et al., NeurIPS 2021); ImageNet stem by default."""
  return ResNet(stage_blocks=(3, 4, 6, 3), stage_widths=(64, 128, 256, 512), stem=stem,
                connection="add", **kwargs)
