"""PyTorch side of the benchmark: ResNet-19 built from a framework's layers, and its train step.

The network (docs/methods.md section 6), written from the spec for the benchmark,
time-major [T, B, C, H, W] inside:

    stem    conv3x3(3 -> c64) - BN - SN
    stage 1 3 x BasicBlock(c128, stride 1)
    stage 2 3 x BasicBlock(c256, first stride 2)
    stage 3 2 x BasicBlock(c512, first stride 2)
    readout mean over H, W -> FC(c256, bias) - SN -> FC(classes, bias); logits = mean over T

    BasicBlock: SN(BN(conv3x3(SN(BN(conv3x3_s(x))))) + shortcut(x)), shortcut =
    x, or BN(conv1x1_s(x)) when the shape changes.

c_n = max(1, round(n * width)); convs bias-free, Kaiming-normal fan_out; BN over
the merged T*B axis (eps 1e-5, momentum 0.1 = Flax's 0.9). A framework supplies
:class:`Layers`: how to build a conv, BN, spiking neuron and linear layer that
act on [T, B, ...] tensors.

The train step: zero grads, forward (autocast to bf16 when asked), CE on the
time-mean logits, backward, AdamW (decay on conv / linear weights only, as
snnjax's optimiser), then the framework's state reset.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import harness
import torch
from torch import nn


@dataclasses.dataclass
class Layers:
  """Factories of time-major layers ([T, B, ...] in and out) of one framework.

  Attributes:
    conv: (in_channels, out_channels, kernel, stride) -> bias-free conv, padding kernel // 2.
    bn: channels -> BatchNorm2d over the merged T*B axis.
    neuron: () -> spiking neuron over T (LIF tau=2, decay_input=False, v_reset=0,
      hard reset, atan(alpha=2)).
    linear: (in_features, out_features) -> Linear with bias.
    reset: network -> None, called after every step (framework state reset), or None.
  """

  conv: Callable[[int, int, int, int], nn.Module]
  bn: Callable[[int], nn.Module]
  neuron: Callable[[], nn.Module]
  linear: Callable[[int, int], nn.Module]
  reset: Callable[[nn.Module], None] | None = None


class MergeTime(nn.Module):
  """Applies a per-image module to [T, B, ...] through the merged [T*B, ...] view."""

  def __init__(self, module: nn.Module):
    super().__init__()
    self.module = module

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.module(x.flatten(0, 1))
    return y.view(x.shape[0], x.shape[1], *y.shape[1:])


def plain_layers(neuron: Callable[[], nn.Module]) -> Layers:
  """Torch's own conv / BN / linear on the merged T*B view, with a framework's neuron."""
  return Layers(
      conv=lambda cin, cout, k, s: MergeTime(nn.Conv2d(cin, cout, k, s, k // 2, bias=False)),
      bn=lambda c: MergeTime(nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)),
      neuron=neuron,
      linear=lambda fin, fout: MergeTime(nn.Linear(fin, fout)),
  )


class BasicBlock(nn.Module):
  """conv3x3(stride)-BN-SN-conv3x3-BN, plus the shortcut, then SN."""

  def __init__(self, layers: Layers, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1, self.bn1, self.sn1 = layers.conv(cin, cout, 3, stride), layers.bn(cout), \
        layers.neuron()
    self.conv2, self.bn2, self.sn2 = layers.conv(cout, cout, 3, 1), layers.bn(cout), \
        layers.neuron()
    self.down = None
    if stride != 1 or cin != cout:
      self.down = nn.Sequential(layers.conv(cin, cout, 1, stride), layers.bn(cout))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.sn1(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.sn2(y + (x if self.down is None else self.down(x)))


class ResNet19(nn.Module):
  """ResNet-19 (see the module docstring); input [B, 3, H, W] repeated over T."""

  def __init__(self, layers: Layers, T: int, width: float, num_classes: int):
    super().__init__()
    c = lambda n: harness.channels(n, width)
    self.T = T
    self.stem = nn.Sequential(layers.conv(3, c(64), 3, 1), layers.bn(c(64)), layers.neuron())
    blocks, cin = [], c(64)
    for n_blocks, base, stride in ((3, 128, 1), (3, 256, 2), (2, 512, 2)):
      for b in range(n_blocks):
        blocks.append(BasicBlock(layers, cin, c(base), stride if b == 0 else 1))
        cin = c(base)
    self.blocks = nn.Sequential(*blocks)
    self.fc_hidden, self.sn_hidden = layers.linear(cin, c(256)), layers.neuron()
    self.fc = layers.linear(c(256), num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = images.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)   # direct encoding, [T, B, C, H, W]
    x = self.blocks(self.stem(x))
    x = x.mean(dim=(3, 4))
    x = self.fc(self.sn_hidden(self.fc_hidden(x)))
    return x.mean(0)


def count_parameters(net: nn.Module) -> int:
  return sum(p.numel() for p in net.parameters() if p.requires_grad)


def adamw(net: nn.Module, spec: harness.Spec) -> torch.optim.Optimizer:
  """AdamW with decoupled weight decay on conv / linear weights (ndim >= 2) only."""
  params = [p for p in net.parameters() if p.requires_grad]
  decay = [p for p in params if p.ndim >= 2]
  no_decay = [p for p in params if p.ndim < 2]
  return torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=spec.lr, betas=(0.9, 0.999), eps=1e-8)


def configure_threads(spec: harness.Spec) -> int:
  """torch.set_num_threads(spec.threads) (all visible cores when 0); returns the count."""
  threads = spec.threads or len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  return threads


class Bench:
  """A ResNet-19 train step in eager PyTorch on a fixed random batch."""

  def __init__(self, spec: harness.Spec, layers: Layers, versions: dict[str, str]):
    self.spec, self.layers, self.versions = spec, layers, versions
    self.threads = configure_threads(spec)
    torch.manual_seed(spec.seed)
    self.device = torch.device("cuda" if spec.device == "gpu" else "cpu")
    self.net = ResNet19(layers, spec.T, spec.width, spec.num_classes).to(self.device)
    self.net.train()
    self.n_params = count_parameters(self.net)
    self.optimizer = adamw(self.net, spec)
    g = torch.Generator().manual_seed(spec.seed)
    size = spec.image_size
    self.images = torch.randn(spec.batch, 3, size, size, generator=g).to(self.device)
    self.labels = torch.randint(0, spec.num_classes, (spec.batch,), generator=g).to(self.device)
    self.autocast = spec.dtype == "bfloat16"
    self._loss = float("nan")

  def compile(self) -> None:
    return None   # eager: nothing to compile

  def _sync(self) -> None:
    if self.device.type == "cuda":
      torch.cuda.synchronize()

  def step(self) -> None:
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
      logits = self.net(self.images)
    loss = nn.functional.cross_entropy(logits.float(), self.labels)
    loss.backward()
    self.optimizer.step()
    if self.layers.reset is not None:
      self.layers.reset(self.net)
    self._sync()
    self._loss = loss.detach()

  def loss(self) -> float:
    return float(self._loss)

  def reset_peak(self) -> None:
    if self.device.type == "cuda":
      torch.cuda.reset_peak_memory_stats()

  def info(self) -> dict[str, Any]:
    peak = torch.cuda.max_memory_allocated() / harness.MIB if self.device.type == "cuda" else None
    return {"device_peak_mb": peak, "torch_threads": self.threads,
            "versions": {"torch": torch.__version__, **self.versions},
            "backend": self.device.type}

