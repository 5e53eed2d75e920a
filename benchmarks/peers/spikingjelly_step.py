"""SpikingJelly row: ResNet-19 from SpikingJelly's multi-step layers, eager PyTorch.

Layers: ``layer.Conv2d`` / ``layer.BatchNorm2d`` / ``layer.Linear`` with
step_mode="m" (SpikingJelly merges T*B for them, so BN statistics are shared
over time), ``neuron.LIFNode(tau=2, decay_input=False, v_reset=0,
surrogate_function=surrogate.ATan(alpha=2), detach_reset=False, step_mode="m")``,
``functional.reset_net`` after each step. The network is
:class:`torch_common.ResNet19`, written from the spec, not SpikingJelly's model zoo.

Neuron kernels: on CPU SpikingJelly 2.0 runs its registered CPU operator; on a
GPU ``--sj-cuda-impl`` picks its CUDA implementation through
SJ_LIF_CUDA_IMPLEMENTATION (auto | cuda | triton | torch). SpikingJelly 2.0 has
no CuPy backend any more; ``--sj-cuda-impl cupy`` runs the CuPy kernels of
SpikingJelly 0.0.0.0.14 (``LIFNode(backend="cupy")``, the release most papers
benchmark), which must then be the SpikingJelly on the path.

Run by the benchmark drivers: ``python spikingjelly_step.py --spec JSON --out FILE``.
"""

from __future__ import annotations

import os

import numpy as np

import harness
import torch_common


def neuron_backend(spec: harness.Spec) -> dict[str, str]:
  """LIFNode keyword arguments choosing the CUDA kernels (sets SpikingJelly 2.0's variable)."""
  if spec.device != "gpu":
    return {}
  if spec.sj_cuda_impl == "cupy":
    version = harness.version("spikingjelly")
    if not version.startswith("0.0.0.0"):
      raise RuntimeError(f"--sj-cuda-impl cupy needs SpikingJelly 0.0.0.0.14 on the path, "
                         f"found {version}")
    if not hasattr(np, "int"):
      np.int = int  # 0.0.0.0.14 still uses the alias that NumPy 1.24 removed
    return {"backend": "cupy"}
  os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] = spec.sj_cuda_impl
  return {}


def build(spec: harness.Spec) -> torch_common.Bench:
  backend = neuron_backend(spec)
  from spikingjelly.activation_based import functional, layer, neuron, surrogate

  layers = torch_common.Layers(
      conv=lambda cin, cout, k, s: layer.Conv2d(cin, cout, k, s, k // 2, bias=False,
                                                step_mode="m"),
      bn=lambda c: layer.BatchNorm2d(c, eps=1e-5, momentum=0.1, step_mode="m"),
      neuron=lambda: neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0,
                                    surrogate_function=surrogate.ATan(alpha=2.0),
                                    detach_reset=False, step_mode="m", **backend),
      linear=lambda fin, fout: layer.Linear(fin, fout, step_mode="m"),
      reset=functional.reset_net,
  )
  versions = {"spikingjelly": harness.version("spikingjelly")}
  if spec.device == "gpu":
    versions["sj_lif_cuda_implementation"] = spec.sj_cuda_impl
  return torch_common.Bench(spec, layers, versions)


if __name__ == "__main__":
  harness.main(build)
