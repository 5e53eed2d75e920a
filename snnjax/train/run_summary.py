"""What a run says at its start: a short block naming what runs, where, on what.

    run       fresh start in /runs/fmnist (checkpoints in /runs/fmnist/checkpoints)
    devices   1 x cpu, 1 process; mesh data=1; host malloc on huge pages
    model     vgg_small width 0.125, T=4, lif neurons, surrogate atan(alpha=2.0), float32
    params    46,650 in the SNN + 164,362 in 1 SML head (trained, dropped at deployment)
    data      fashion_mnist_idx: train 60,000 (937 steps/epoch at batch 64), eval 'test' 10,000
    schedule  937 steps = 1.0 epochs; adamw lr 0.008 cosine; this run: steps 1 to 937

Every line comes from the resolved config, the device mesh and the built
pipelines, not from a config file's comments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from snnjax import host_memory
from snnjax.models import surrogate_module


def parameter_counts(params: Mapping[str, Any]) -> tuple[int, int, int]:
  """(SNN parameters, SML head parameters, number of heads) of a params tree (shapes suffice)."""
  def count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
  heads = [k for k in params if surrogate_module.is_head(k)]
  snn = count({k: v for k, v in params.items() if k not in heads})
  return snn, count({k: params[k] for k in heads}), len(heads)


def devices_line(mesh) -> str:
  devices = mesh.devices.flatten().tolist()
  kinds = sorted({d.device_kind for d in devices})
  shape = " x ".join(f"{name}={size}" for name, size in mesh.shape.items())
  processes = jax.process_count()
  backend = jax.default_backend()
  kind = ", ".join(kinds) if kinds == [backend] else f"{', '.join(kinds)} ({backend})"
  malloc = "; host malloc on huge pages" if host_memory.active() else ""
  return (f"{len(devices)} x {kind}, {processes} process{'es' if processes > 1 else ''}; "
          f"mesh {shape}{malloc}")


def model_line(model_config: ml_collections.ConfigDict) -> str:
  m = model_config
  width = f" width {m.width:g}" if m.width != 1 else ""
  return (f"{m.name}{width}, T={m.T}, {m.neuron} neurons, surrogate {m.surrogate}, "
          f"{m.dtype}" + (f", remat={m.remat}" if m.remat != "none" else ""))


def params_line(params: Mapping[str, Any]) -> str:
  snn, heads, n = parameter_counts(params)
  if not n:
    return f"{snn:,} in the SNN"
  return (f"{snn:,} in the SNN + {heads:,} in {n} SML head{'s' if n > 1 else ''} "
          f"(trained, dropped at deployment)")


def data_line(config: ml_collections.ConfigDict, train, test) -> str:
  d = config.data
  return (f"{d.source}{'/' + d.name if d.source in ('tfds', 'cifar_python') else ''}: "
          f"train {train.num_examples:,} ({train.steps_per_epoch:,} steps/epoch at batch "
          f"{config.batch_size}), eval '{d.eval_split}' {test.num_examples:,}; examples "
          f"{'x'.join(map(str, train.image_shape))}")


def schedule_line(config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int,
                  run_steps: int, start_step: int) -> str:
  o = config.optimizer
  this_run = (f"steps {start_step + 1:,} to {run_steps:,}" if start_step < run_steps
              else f"nothing left to train (step {start_step:,} of {run_steps:,})")
  epochs = total_steps / steps_per_epoch
  gradient = "" if config.gradient == "bptt" else f", gradient {config.gradient}"
  return (f"{total_steps:,} steps = {epochs:.4g} epoch{'' if epochs == 1 else 's'}; {o.name} lr "
          f"{o.learning_rate:g} {o.schedule}{gradient}; this run: {this_run}")


def summary_lines(config: ml_collections.ConfigDict, *, mesh, params, train, test,
                  total_steps: int, run_steps: int, workdir, restored_step: int | None) -> list[str]:
  """The block of the module docstring, one string per line."""
  start = 0 if restored_step is None else restored_step
  run = "fresh start" if restored_step is None else f"resumed from step {restored_step}"
  rows = [("run", f"{run} in {workdir} (checkpoints in {workdir}/checkpoints)"),
          ("devices", devices_line(mesh)), ("model", model_line(config.model)),
          ("params", params_line(params)), ("data", data_line(config, train, test)),
          ("schedule", schedule_line(config, train.steps_per_epoch, total_steps, run_steps,
                                     start))]
  return [f"{name:<9} {text}" for name, text in rows]
