"""Pictures of what a trained run's neurons do: python -m snnjax.inspect --workdir W --out DIR.

Restores the best (or latest) checkpoint of WORKDIR, records every neuron layer
(snnjax.monitor) on the first batch of the test split (--split), and writes into DIR:

    layers/<layer>.png       spike raster of --neurons neurons of the first example
                             (evenly spaced over the layer) and the membrane of
                             --traces of them: before reset (dots), after reset
                             (line), the threshold (dashed)
    firing_rates.png         per layer, the histogram of per-neuron firing rates
    firing_rate_over_time.png  per layer, the firing rate at each time step
    summary.md               the table below (also printed)

Firing rates are spikes per neuron per time step, over the batch; "silent" is the
share of neurons that never fire on the batch, "saturated" of those that fire at
every step.

    python -m snnjax.inspect --workdir DIR --out docs/inspect
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from snnjax import evaluate, monitor
from snnjax.train import steps

Recording = Mapping[str, Mapping[str, np.ndarray]]


def record_workdir(workdir: str | pathlib.Path, which: str = "best", split: str | None = None,
                   batch_size: int | None = None, layers: list[str] | None = None) -> dict:
  """{"config", "step", "split", "recording": {layer: {name: [T, B, ...] array}}, "v_threshold"}."""
  config, experiment, state, step = evaluate.restore_run(workdir, which)
  variables = jax.device_get(steps.model_variables(state))
  split = split or config.data.eval_split
  pipeline = evaluate.split_pipeline(config, experiment, split, batch_size)
  batch = next(iter(pipeline.dataset))
  real = np.asarray(batch["mask"], bool)
  inputs = steps.encoded_input(batch["image"][real], experiment.model, config.data.encoding)
  wanted = monitor.check_layers(monitor.layer_names(experiment.model, variables, inputs), layers)
  with evaluate.phase(f"recording {len(wanted)} neuron layers on {int(real.sum())} examples"):
    recorded = jax.jit(lambda v, x: monitor.record(experiment.model, v, x, wanted))(variables,
                                                                                     inputs)
  recording = {layer: jax.tree.map(np.asarray, recorded[layer]) for layer in wanted}
  return {"config": config, "step": step, "split": split, "recording": recording,
          "v_threshold": float(config.model.v_threshold)}


def layer_statistics(spikes: np.ndarray) -> dict[str, Any]:
  """Firing statistics of one layer's spikes [T, B, ...]."""
  per_neuron = spikes.reshape(spikes.shape[0], spikes.shape[1], -1).mean(axis=(0, 1))
  return {"neurons": per_neuron.size, "rate": float(spikes.mean()),
          "silent": float(np.mean(per_neuron == 0)), "saturated": float(np.mean(per_neuron == 1)),
          "rate_per_step": spikes.reshape(spikes.shape[0], -1).mean(axis=1).tolist(),
          "per_neuron": per_neuron}


def format_summary(result: Mapping[str, Any]) -> str:
  """The Markdown table of every recorded layer."""
  recording = result["recording"]
  T = next(iter(recording.values()))["spikes"].shape[0]
  head = (f"Checkpoint step {result['step']} of {result['config'].model.name}, split "
          f"{result['split']!r}, first batch. Rates: spikes per neuron per time step.\n\n")
  rows = ["| layer | neurons | rate | silent | saturated | " +
          " | ".join(f"t={t}" for t in range(T)) + " |",
          "|---|---:|---:|---:|---:|" + "---:|" * T]
  for layer, record in recording.items():
    s = layer_statistics(record["spikes"])
    per_step = " | ".join(f"{r:.3f}" for r in s["rate_per_step"])
    rows.append(f"| {layer} | {s['neurons']:,} | {s['rate']:.3f} | {100 * s['silent']:.1f} % | "
                f"{100 * s['saturated']:.1f} % | {per_step} |")
  return head + "\n".join(rows) + "\n"


def _file_name(layer: str) -> str:
  return layer.replace("/", ".") + ".png"


def chosen_neurons(record: Mapping[str, np.ndarray], count: int) -> np.ndarray:
  """``count`` neuron indices of the flattened layer, evenly spaced (chosen before looking)."""
  size = int(np.prod(record["spikes"].shape[2:]))
  return np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))


def plot_layer(layer: str, record: Mapping[str, np.ndarray], v_threshold: float,
               path: pathlib.Path, neurons: int, traces: int) -> None:
  """Raster (left) and membrane traces (right) of the first example of one layer."""
  plt = evaluate.pyplot()

  T = record["spikes"].shape[0]
  flat = {k: v[:, 0].reshape(T, -1) for k, v in record.items()}
  chosen = chosen_neurons(record, neurons)
  fig, (raster, membrane) = plt.subplots(1, 2, figsize=(10, 3.6))
  times, rows = np.nonzero(flat["spikes"][:, chosen].T)
  raster.scatter(rows, times, marker="|", s=120, color="black")
  raster.set(xlim=(-0.5, T - 0.5), ylim=(-0.5, len(chosen) - 0.5), xlabel="time step t",
             ylabel=f"neuron ({len(chosen)} of {flat['spikes'].shape[1]:,})",
             title=f"{layer}: spikes, example 0")
  steps_axis = np.arange(T)
  for i, neuron in enumerate(chosen[np.linspace(0, len(chosen) - 1, min(traces, len(chosen)))
                                    .round().astype(int)]):
    line, = membrane.plot(steps_axis, flat["membrane"][:, neuron], label=f"neuron {neuron}")
    membrane.plot(steps_axis, flat["membrane_before_reset"][:, neuron], "o",
                  color=line.get_color(), markersize=4)
  for ax in (raster, membrane):
    ax.set_xticks(steps_axis)
  membrane.axhline(v_threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
  membrane.set(xlabel="time step t", ylabel="membrane",
               title="after reset (line), before reset (dots)")
  membrane.legend(fontsize=7, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_rate_histograms(recording: Recording, path: pathlib.Path) -> None:
  """One histogram of per-neuron firing rates per layer (small multiples)."""
  plt = evaluate.pyplot()

  names = list(recording)
  columns = min(4, len(names))
  rows = -(-len(names) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
  for ax, layer in zip(axes.flat, names):
    stats = layer_statistics(recording[layer]["spikes"])
    ax.hist(stats["per_neuron"], bins=np.linspace(0, 1, 21), color="tab:blue")
    ax.set_title(f"{layer} (mean {stats['rate']:.3f})", fontsize=8)
    ax.set_xlabel("firing rate", fontsize=7)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_rates_over_time(recording: Recording, path: pathlib.Path) -> None:
  """Each layer's firing rate at each time step."""
  plt = evaluate.pyplot()

  fig, ax = plt.subplots(figsize=(7, 4))
  for layer, record in recording.items():
    rates = layer_statistics(record["spikes"])["rate_per_step"]
    ax.plot(np.arange(len(rates)), rates, marker="o", label=layer)
  ax.set(xlabel="time step t", ylabel="firing rate", title="firing rate per time step")
  ax.set_xticks(np.arange(len(rates)))
  ax.legend(fontsize=6, ncol=2, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_pictures(result: Mapping[str, Any], out: pathlib.Path, neurons: int,
                   traces: int) -> list[pathlib.Path]:
  """Every picture and the table into ``out``; returns the files written."""
  recording = result["recording"]
  (out / "layers").mkdir(parents=True, exist_ok=True)
  written = []
  for layer, record in recording.items():
    path = out / "layers" / _file_name(layer)
    plot_layer(layer, record, result["v_threshold"], path, neurons, traces)
    written.append(path)
  plot_rate_histograms(recording, out / "firing_rates.png")
  plot_rates_over_time(recording, out / "firing_rate_over_time.png")
  (out / "summary.md").write_text(format_summary(result))
  return written + [out / "firing_rates.png", out / "firing_rate_over_time.png",
                    out / "summary.md"]


def main(argv=None) -> int:
  parser = evaluate.command_parser("inspect", __doc__, out_folder=True)
  parser.add_argument("--neurons", type=evaluate.positive_int, default=32, metavar="N",
                      help="neurons per layer in the raster")
  parser.add_argument("--traces", type=evaluate.positive_int, default=4, metavar="N",
                      help="of those, neurons whose membrane is drawn")
  parser.add_argument("--layers", default=None, metavar="A,B",
                      help="neuron layers to record, e.g. 'sn1,layer2_0/sn2' (default: all)")
  args = parser.parse_args(argv)
  layers = args.layers.split(",") if args.layers else None
  status, result = evaluate.run_command(
      lambda: record_workdir(args.workdir, args.checkpoint, args.split, args.batch_size, layers))
  if status or jax.process_index() != 0:
    return status
  with evaluate.phase(f"writing the pictures into {args.out}"):
    written = write_pictures(result, args.out, args.neurons, args.traces)
  print(format_summary(result))
  print(f"wrote {len(written)} files into {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
