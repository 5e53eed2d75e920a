"""snnTorch row: ResNet-19 with snnTorch's Leaky neuron, eager PyTorch.

snnTorch neurons are single-step modules, so each neuron layer loops
``snn.Leaky`` over T (:class:`LeakyOverTime`), while convs, BN and linear
layers act on the merged T*B view (BN statistics shared over time, as in the
other frameworks). ``snn.Leaky(beta=0.5, threshold=1, reset_mechanism="zero",
spike_grad=surrogate.atan(alpha=2))`` computes the same forward pass as LIF
tau=2, decay_input=False, v_reset=0 with a hard reset:
h[t] = 0.5 v[t-1] + x[t], s[t] = H(h[t] - 1), v[t] = h[t] (1 - s[t]).

Difference that snnTorch cannot remove: its reset is always detached from the
graph (``mem_reset`` detaches the spike), i.e. detach_reset=True, so its
backward skips the reset path that the other frameworks differentiate (a few
element-wise ops per neuron and step: slightly less work, not more).

Run by the benchmark drivers: ``python snntorch_step.py --spec JSON --out FILE``.
"""

from __future__ import annotations


import harness
import snntorch as snn
import torch
import torch_common
from snntorch import surrogate
from torch import nn


class LeakyOverTime(nn.Module):
  """snn.Leaky stepped over the leading T axis of [T, B, ...]; membrane starts at 0."""

  def __init__(self):
    super().__init__()
    self.lif = snn.Leaky(beta=0.5, threshold=1.0, spike_grad=surrogate.atan(alpha=2.0),
                         reset_mechanism="zero")

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    mem = torch.zeros_like(x[0])
    spikes = []
    for x_t in x:
      spike, mem = self.lif(x_t, mem)
      spikes.append(spike)
    return torch.stack(spikes)


def build(spec: harness.Spec) -> torch_common.Bench:
  layers = torch_common.plain_layers(LeakyOverTime)
  return torch_common.Bench(spec, layers, {"snntorch": harness.version("snntorch")})


if __name__ == "__main__":
  harness.main(build)
