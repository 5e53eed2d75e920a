"""Surrogate modules (SML heads): small ANN side branches used only in training.

From "Surrogate Module Learning: Reduce the Gradient Error Accumulation in
Training Spiking Neural Networks" (Deng et al., ICML 2023). A head attached
after block i of the SNN reads the block output's firing rate and predicts the
class; its exact ANN gradient gives the blocks before it a second, more accurate
gradient path. Heads are computed only with train=True (and at init, so their
variables exist); the SNN's inference cost is unchanged, and
:func:`strip_heads` removes their variables for deployment.

Placement: block i is the i-th entry (1-based) of the model's flat list of
blocks: residual blocks for ResNets (the stem is not a block), conv layers for
the plain nets (each conv layer with its BN, neuron and pooling is a block). The
head follows the block's output, i.e. it sees what the next block receives. For
CIFAR ResNet-18 (2-2-2-2 blocks) heads (3, 6) read the first block of stage 2
(128 channels, 16x16) and the second, last block of stage 3 (256 channels, 8x8);
for ResNet-19 (3-3-2) they read the last blocks of stages 1 and 2; for ImageNet
ResNet-34 (3-4-6-3), heads (3, 7, 13) read the ends of stages 1, 2 and 3.

Input: the firing rate, mean over T of the block output [T, B, H, W, C] ->
[B, H, W, C] (for SEW-ResNet a rate of spike sums, for the ANN twin a mean
activation). There is no stop-gradient between the SNN and the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from snnjax import layers
from snnjax.models.common import (HEAD_PREFIX, adaptive_avg_pool, conv_function, conv_kernel_init,
                                  dense)

Array = jax.Array


def leaky_relu(x: Array) -> Array:
  """LeakyReLU with slope 0.01 for x < 0."""
  return nn.leaky_relu(x, negative_slope=0.01)


class SurrogateHead(nn.Module):
  """An SML head: rate map [B, H, W, C] -> logits [B, classes] (float32).

  Layers (k = ``channels``; every conv bias-free, followed by BN and LeakyReLU(0.01)):

      [1x1 conv to k, only if C > k]
      kC7s2 (pad 3) -> kC5s2 (pad 2) -> kC3s1 (pad 1)      H -> ceil(H/2) -> ceil(H/4)
      adaptive avg-pool to 2x2 -> flatten (4k)
      FC ``hidden`` (with bias, as the reference code's nn.Linear) -> BN1d -> LeakyReLU
      -> FC classes

  Parameters at k=256, 10 classes: 5,971,978 for C=256, 4,366,346 for C=128
  (the 7x7 conv, C k 49 weights, dominates); a C=512 input adds the reducer's
  512 k + 2k = 131,584 to the C=256 count. ``hidden_bias=False`` drops the
  FC512 bias (512 parameters; BN1d right after it makes it redundant, and
  snnjax's heads had none before): 5,971,466 and 4,365,834.

  Attributes:
    num_classes, channels (k), hidden (512), dtype, bn_momentum: as above.
    hidden_bias: the FC ``hidden`` layer has a bias.
    conv_init, dense_init, explicit_conv_grads: see :class:`snnjax.models.common.LayerFactory`.
  """

  num_classes: int
  channels: int = 256
  hidden: int = 512
  dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  hidden_bias: bool = True
  conv_init: str = "kaiming_fan_out"
  dense_init: str = "lecun"
  explicit_conv_grads: bool = False

  @nn.compact
  def __call__(self, rate: Array, train: bool) -> Array:
    if rate.ndim != 4:
      raise ValueError(f"an SML head takes a rate map [B, H, W, C], got shape {rate.shape}.")
    k = self.channels

    def bn(name):
      return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
                          dtype=self.dtype, name=name)

    def conv_bn_act(x, kernel, stride, name):
      pad = kernel // 2
      x = nn.Conv(k, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                  use_bias=False, kernel_init=conv_kernel_init(self.conv_init), dtype=self.dtype,
                  conv_general_dilated=conv_function(self.explicit_conv_grads),
                  name=f"{name}_conv")(x)
      return leaky_relu(bn(f"{name}_bn")(x))

    x = rate.astype(self.dtype)
    if x.shape[-1] > k:
      x = conv_bn_act(x, 1, 1, "reduce")
    x = conv_bn_act(x, 7, 2, "c7")
    x = conv_bn_act(x, 5, 2, "c5")
    x = conv_bn_act(x, 3, 1, "c3")
    x = adaptive_avg_pool(x, 2).reshape(x.shape[0], -1)
    x = dense(self.hidden, x, self.dense_init, use_bias=self.hidden_bias, dtype=self.dtype,
              name="fc1")
    x = leaky_relu(bn("fc1_bn")(x))
    x = dense(self.num_classes, x, self.dense_init, dtype=self.dtype, name="fc2")
    return x.astype(jnp.float32)


def attach(net: Any, index: int, x: Array, train: bool) -> Array | None:
  """Runs ``net``'s head after block ``index`` on block output x [T, B, H, W, C].

  Call from inside ``net``'s compact ``__call__``. Returns the head's logits, or
  None when no head sits at ``index`` or the head is not computed (train=False
  outside init).
  """
  if index not in net.sml_heads or not (train or net.is_initializing()):
    return None
  head = SurrogateHead(net.num_classes, channels=net.head_channels, dtype=net.dtype,
                       bn_momentum=net.bn_momentum, hidden_bias=net.head_bias,
                       conv_init=net.conv_init, dense_init=net.dense_init,
                       explicit_conv_grads=net.explicit_conv_grads,
                       name=f"{HEAD_PREFIX}{index}")
  return head(layers.time_mean(x), train)


def is_head(name: str) -> bool:
  """True for the variable-tree key of an SML head ("sml_head_<i>")."""
  return name.startswith(HEAD_PREFIX)


def strip_heads(variables: Mapping[str, Any]) -> dict[str, Any]:
  """The SNN-only variables: every head's entry removed from every collection.

  The result applies to the same model built with ``sml_heads=()`` and gives
  the same eval-mode outputs. Collections left empty are dropped.
  """
  stripped = {}
  for collection, tree in variables.items():
    kept = {name: value for name, value in tree.items() if not is_head(name)}
    if kept:
      stripped[collection] = kept
  return stripped
