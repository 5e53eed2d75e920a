"""Gradient-error probe of a trained run: python -m snnjax.probe --workdir DIR [--directions 32].

Restores a checkpoint of WORKDIR (the latest by default) and, for every conv
and dense layer in depth order, compares the surrogate gradient of the SNN's
own loss with central finite differences of the true spiking loss along random
directions in that layer's kernel (:func:`snnjax.estimators.gradient_probe`).
When the run has Surrogate Module Learning heads, each head's loss and the
full SML loss are compared too (cosine against the same finite differences):
does the head's gradient point where the true SNN loss goes down?

The loss is evaluated as training sees it: train mode (BatchNorm batch
statistics, SML heads on), on ``--batches`` un-augmented batches of the
training split in file order, averaged. The SNN's loss is the task loss
without SML (CE on the time-mean logits, or TET if the run used it).
Writes a Markdown table (--out) and a plot of cosine vs layer depth (--plot).

    python -m snnjax.probe --workdir DIR --batches 1 --directions 32 \
        --out docs/probe.md --plot docs/probe.png
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from snnjax import data, energy, estimators, evaluate, losses
from snnjax.train import steps


def probe_losses(model: Any, config: ml_collections.ConfigDict, variables: Mapping[str, Any],
                 batches: Sequence[Mapping[str, Any]], dropout_key: Any
                 ) -> tuple[Callable, dict[str, Callable]]:
  """(SNN loss, {reference name: loss}) as functions of the parameters, on fixed batches.

  References (only for runs with SML heads): "sml" the full SML loss, and
  "head_<b>" the cross-entropy of the head after block b.
  """
  snn_config = config.copy_and_resolve_references()
  snn_config.sml.enabled = False

  def mean_loss(per_batch: Callable[[Any, Any], Any]) -> Callable:
    def loss_fn(params):
      total = 0.0
      for batch in batches:
        out, _ = model.apply({**variables, "params": params},
                             steps.model_input(batch["image"]), train=True,
                             mutable=["batch_stats"], rngs={"dropout": dropout_key})
        total = total + per_batch(out, batch["label"])
      return total / len(batches)
    return loss_fn

  snn_loss = mean_loss(lambda out, y: steps.task_loss(snn_config, out, y)["loss"])
  references = {}
  if config.sml.enabled:
    references["sml"] = mean_loss(lambda out, y: steps.task_loss(config, out, y)["loss"])
    for i, block in enumerate(config.sml.heads):
      references[f"head_{block}"] = mean_loss(
          lambda out, y, i=i: losses.cross_entropy(out.aux_logits[i], y))
  return snn_loss, references


def _batches(config: ml_collections.ConfigDict, count: int, batch_size: int) -> list[dict]:
  """The first ``count`` un-augmented batches of the training split (padding rows removed)."""
  pipeline = data.create_dataset(config.data, config.data.train_split, batch_size=batch_size,
                                 seed=config.seed, shard_index=0, shard_count=1, train=False)
  batches = []
  for batch in iter(pipeline.dataset):
    keep = np.asarray(batch["mask"], bool)
    # Device arrays: a jitted loss then takes them as arguments, not as HLO literals.
    batches.append({"image": jnp.asarray(np.asarray(batch["image"])[keep]),
                    "label": jnp.asarray(np.asarray(batch["label"])[keep])})
    if len(batches) == count:
      break
  return batches


def probe_workdir(workdir: str | pathlib.Path, *, which: str = "latest", num_batches: int = 1,
                  batch_size: int = 0, num_directions: int = 32, step_size: float = 0.05,
                  seed: int = 0) -> dict[str, Any]:
  """Restores a run and probes every conv/dense layer; returns step, config and results."""
  if num_batches < 1:
    raise ValueError(f"--batches={num_batches} must be >= 1.")
  config, exp, state, step = evaluate.restore_run(workdir, which)
  state = jax.device_get(state)
  batches = _batches(config, num_batches, batch_size or config.batch_size)
  variables = {"batch_stats": state.batch_stats, "surrogate": state.surrogate}
  key = jax.random.key(seed)
  snn_loss, references = probe_losses(exp.model, config, variables, batches,
                                      jax.random.fold_in(key, 1))
  sample = steps.model_input(batches[0]["image"])
  calls = energy.record_layers(exp.model, {**variables, "params": state.params}, sample,
                               T=config.model.T, batch_size=len(batches[0]["label"]), train=False)
  with_kernel = set(estimators.kernel_layers(state.params))
  order = [c.name for c in calls if c.name in with_kernel]
  order = list(dict.fromkeys(order))  # a layer called twice is probed once
  results = estimators.gradient_probe(
      snn_loss, state.params, key, num_directions, step_size, layers_to_probe=order,
      reference_loss_fns=references)
  return {"step": step, "config": config, "results": results}


def _interval(value: float, ci: tuple[float, float]) -> str:
  if not math.isfinite(value):
    return "n/a"
  return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def format_table(results: Sequence[estimators.LayerProbe], title: str = "") -> str:
  """Markdown: one row per layer in depth order, intervals in brackets."""
  refs = list(results[0].references) if results else []
  lines = [f"# {title}", ""] if title else []
  lines += [
      "Surrogate directional derivatives g.d vs central finite differences of the true "
      "(spiking) loss along random unit directions d of each kernel; intervals are 95% "
      "percentile-bootstrap intervals over directions.", "",
      "| depth | layer | entries | eps | cosine | relative error |"
      + "".join(f" cosine ({r}) |" for r in refs),
      "|---:|---|---:|---:|---|---|" + "---|" * len(refs)]
  for depth, r in enumerate(results, 1):
    cells = [str(depth), r.layer, str(r.size), f"{r.step_size:.3g}",
             _interval(r.cosine, r.cosine_ci), _interval(r.relative_error, r.relative_error_ci)]
    cells += [_interval(*r.references[name]) for name in refs]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(results: Sequence[estimators.LayerProbe], path: str | pathlib.Path,
         title: str = "") -> None:
  """Cosine (with its interval) vs layer depth; one line per reference gradient too."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  depth = np.arange(1, len(results) + 1)
  fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(results) + 2), 3.8))

  def line(values, intervals, label, shift):
    values = np.asarray(values, float)
    lo, hi = np.asarray(intervals, float).T
    ax.errorbar(depth + shift, values, yerr=[values - lo, hi - values], marker="o",
                capsize=3, label=label)

  line([r.cosine for r in results], [r.cosine_ci for r in results], "surrogate (SNN loss)", 0.0)
  for n, name in enumerate(results[0].references if results else [], 1):
    line([r.references[name][0] for r in results], [r.references[name][1] for r in results],
         name, 0.08 * n)
  ax.axhline(0, color="grey", lw=0.8)
  ax.set_xticks(depth, [r.layer for r in results], rotation=60, ha="right", fontsize=7)
  ax.set_xlabel("layer (depth order)")
  ax.set_ylabel("cosine with finite differences")
  ax.set_ylim(-1.05, 1.05)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, type=pathlib.Path)
  parser.add_argument("--checkpoint", default="latest", choices=("best", "latest"))
  parser.add_argument("--batches", type=int, default=1)
  parser.add_argument("--batch-size", type=int, default=0, help="0 = the run's batch_size")
  parser.add_argument("--directions", type=int, default=32)
  parser.add_argument("--step-size", type=float, default=0.05,
                      help="eps relative to each kernel's norm")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", type=pathlib.Path, default=None, help="Markdown table")
  parser.add_argument("--plot", type=pathlib.Path, default=None, help="PNG plot")
  args = parser.parse_args(argv)
  def title(result):
    c = result["config"]
    return (f"Gradient probe: {c.model.name}, T={c.model.T}, surrogate {c.model.surrogate}, "
            f"checkpoint step {result['step']}, {args.directions} directions, "
            f"eps = {args.step_size:g} x ||W||")

  return evaluate.report_main(
      lambda: probe_workdir(args.workdir, which=args.checkpoint, num_batches=args.batches,
                            batch_size=args.batch_size, num_directions=args.directions,
                            step_size=args.step_size, seed=args.seed),
      title, format_table, plot, args.out, args.plot)


if __name__ == "__main__":
  sys.exit(main())
