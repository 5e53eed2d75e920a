"""Gradient-error probe of a trained run: python -m snnjax.probe --workdir DIR [--directions 32].

Restores a checkpoint of WORKDIR (the best by default, as in every analysis
command) and, for every conv and dense layer in depth order, compares the
surrogate gradient of the SNN's own loss with central finite differences of the
true spiking loss along random directions in that layer's kernel
(:func:`snnjax.gradient_probe.gradient_probe`). Each row names the neuron whose
spikes the layer reads (e.g. conv2 reads sn1), as snnjax.evaluate's tables do.
When the run has Surrogate Module Learning heads, each head's loss and the
full SML loss are compared too (cosine against the same finite differences):
does the head's gradient point where the true SNN loss goes down?

The loss is evaluated as training sees it: train mode (BatchNorm batch
statistics, SML heads on), on ``--batches`` un-augmented batches of the
training split (or --split) in file order, averaged. The SNN's loss is the
task loss without SML (CE on the time-mean logits, or TET if the run used it).
Writes a Markdown table (--out) and a plot of cosine vs layer depth (--plot).

    python -m snnjax.probe --workdir DIR --batches 1 --directions 32 \
        --out docs/probe.md --plot docs/probe.png
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from snnjax import data, energy, evaluate, gradient_probe, losses
from snnjax.train import loop, steps


def probe_losses(model: Any, config: ml_collections.ConfigDict, state: Any,
                 batches: Sequence[Mapping[str, Any]], dropout_key: Any
                 ) -> tuple[Callable, dict[str, Callable]]:
  """(SNN loss, {reference name: loss}) as functions of the parameters, on fixed batches.

  The other variables (BatchNorm statistics, surrogate parameters) are ``state``'s.

  References (only for runs with SML heads): "sml" the full SML loss, and
  "head_<b>" the cross-entropy of the head after block b.
  """
  snn_config = config.copy_and_resolve_references()
  snn_config.sml.enabled = False

  def mean_loss(per_batch: Callable[[Any, Any], Any]) -> Callable:
    def loss_fn(params):
      total = 0.0
      for batch in batches:
        inputs = steps.encoded_input(batch["image"], model, config.data.encoding)
        out, _ = model.apply(steps.model_variables(state, params), inputs, train=True,
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


def _batches(config: ml_collections.ConfigDict, split: str, count: int,
             batch_size: int) -> list[dict]:
  """The first ``count`` un-augmented batches of ``split`` (padding rows removed).

  Announces the split and how much of it is used; ValueError names a bad --split.
  """
  try:
    pipeline = data.create_dataset(config.data, split, batch_size=batch_size, seed=config.seed,
                                   shard_index=0, shard_count=1, train=False)
  except ValueError as e:
    raise ValueError(f"--split {split!r}: {evaluate.one_line(e)}") from None
  batches = []
  for batch in iter(pipeline.dataset):
    keep = np.asarray(batch["mask"], bool)
    # Device arrays: a jitted loss then takes them as arguments, not as HLO literals.
    batches.append({"image": jnp.asarray(np.asarray(batch["image"])[keep]),
                    "label": jnp.asarray(np.asarray(batch["label"])[keep])})
    if len(batches) == count:
      break
  used = sum(len(b["label"]) for b in batches)
  loop.announce(f"split {split!r}: probing on its first {used:,} of {pipeline.num_examples:,} "
                f"examples ({_count(len(batches), 'batch', 'batches')} "
                f"of {batch_size})")
  return batches


def _count(n: int, noun: str, plural: str = "") -> str:
  """'1 gradient', '3 gradients'; ``plural`` for nouns that do not take an s."""
  return f"{n} {noun if n == 1 else plural or noun + 's'}"


class _Progress:
  """Counts the probe's loss evaluations (a host callback in each); a bar and a line per layer.

  gradient_probe first takes the gradients (the SNN loss's and each
  reference's), then evaluates the loss twice per direction, layer by layer.
  """

  def __init__(self, layers: Sequence[str], gradients: int, directions: int):
    self.layers, self.gradients, self.per_layer = list(layers), gradients, 2 * directions
    self.done, self.started = 0, time.perf_counter()
    total = gradients + self.per_layer * len(self.layers)
    loop.announce(f"probing {len(self.layers)} layers: {_count(gradients, 'gradient')}, then "
                  f"{total - gradients} loss evaluations (the first of each compiles) ...")
    self.bar = tqdm(total=total, desc="probe", unit="loss", leave=False, dynamic_ncols=True,
                    disable=not evaluate.show_bars())

  def wrap(self, loss_fn: Callable) -> Callable:
    """``loss_fn`` that ticks once per evaluation of its compiled form (or of its gradient)."""
    def counted(params):
      loss = loss_fn(params)
      jax.debug.callback(self.tick)
      return loss
    return counted

  def tick(self) -> None:
    self.done += 1
    self.bar.update(1)
    layer, within = divmod(self.done - self.gradients, self.per_layer)
    if self.done == self.gradients:
      self._line(_count(self.gradients, "gradient"))
    elif self.done > self.gradients and within == 0:
      self._line(f"layer {layer}/{len(self.layers)}, {self.layers[layer - 1]}")

  def _line(self, what: str) -> None:
    loop.announce(f"probed {what}: {time.perf_counter() - self.started:.1f} s")
    self.started = time.perf_counter()

  def close(self) -> None:
    self.bar.close()


def probe_workdir(workdir: str | pathlib.Path, *, which: str = "best", split: str | None = None,
                  num_batches: int = 1, batch_size: int | None = None, num_directions: int = 32,
                  step_size: float = 0.05, seed: int = 0) -> dict[str, Any]:
  """Restores a run and probes every conv/dense layer; returns step, config, results, inputs.

  ``split`` defaults to the run's training split, ``batch_size`` to its
  batch_size; "inputs" maps each probed layer to what it reads
  (:func:`snnjax.energy.input_label`, e.g. "sn1 spikes").
  """
  if num_batches < 1:
    raise ValueError(f"--batches={num_batches} must be >= 1.")
  if num_directions < 2:
    raise ValueError(f"--directions={num_directions} must be >= 2 for a confidence interval.")
  if not step_size > 0:
    raise ValueError(f"--step-size={step_size} must be > 0.")
  config, experiment, state, step = evaluate.restore_run(workdir, which)
  state = jax.device_get(state)
  batches = _batches(config, split or config.data.train_split, num_batches,
                     batch_size or config.batch_size)
  key = jax.random.key(seed)
  snn_loss, references = probe_losses(experiment.model, config, state, batches,
                                      jax.random.fold_in(key, 1))
  sample = steps.encoded_input(batches[0]["image"], experiment.model, config.data.encoding)
  with evaluate.phase("recording the layers' order and inputs on one batch"):
    calls = energy.record_layers(experiment.model, steps.model_variables(state), sample,
                                 T=config.model.T, batch_size=len(batches[0]["label"]),
                                 train=False)
  with_kernel = set(gradient_probe.kernel_layers(state.params))
  inputs = {}
  for call in calls:  # a layer called twice is probed once
    if call.name in with_kernel:
      inputs.setdefault(call.name, energy.input_label(call))
  progress = _Progress(list(inputs), 1 + len(references), num_directions)
  try:
    results = gradient_probe.gradient_probe(
        progress.wrap(snn_loss), state.params, key, num_directions, step_size,
        layers_to_probe=list(inputs),
        reference_loss_fns={n: progress.wrap(fn) for n, fn in references.items()})
  finally:
    progress.close()
  return {"step": step, "config": config, "results": results, "inputs": inputs}


def _interval(value: float, ci: tuple[float, float]) -> str:
  if not math.isfinite(value):
    return "n/a"
  return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def format_table(results: Sequence[gradient_probe.LayerProbe], title: str = "",
                 inputs: Mapping[str, str] | None = None) -> str:
  """Markdown: one row per layer in depth order, intervals in brackets.

  ``inputs``: {layer: what it reads}, e.g. "sn1 spikes" (an "input" column).
  """
  refs = list(results[0].references) if results else []
  inputs = inputs or {}
  lines = [f"# {title}", ""] if title else []
  lines += [
      "Surrogate directional derivatives g.d vs central finite differences of the true "
      "(spiking) loss along random unit directions d of each kernel; intervals are 95% "
      "percentile-bootstrap intervals over directions.", "",
      "| depth | layer | input | entries | eps | cosine | relative error |"
      + "".join(f" cosine ({r}) |" for r in refs),
      "|---:|---|---|---:|---:|---|---|" + "---|" * len(refs)]
  for depth, r in enumerate(results, 1):
    cells = [str(depth), r.layer, inputs.get(r.layer, "-"), str(r.size), f"{r.step_size:.3g}",
             _interval(r.cosine, r.cosine_ci), _interval(r.relative_error, r.relative_error_ci)]
    cells += [_interval(*r.references[name]) for name in refs]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot(results: Sequence[gradient_probe.LayerProbe], path: str | pathlib.Path,
         title: str = "") -> None:
  """Cosine (with its interval) vs layer depth; one line per reference gradient too."""
  plt = evaluate.pyplot()
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
  parser = evaluate.command_parser("probe", __doc__, split="train_split", seed=True, plot=True)
  parser.add_argument("--batches", type=evaluate.positive_int, default=1, metavar="N",
                      help="batches the loss averages over")
  parser.add_argument("--directions", type=int, default=32, metavar="K",
                      help="random directions per layer (>= 2)")
  parser.add_argument("--step-size", type=float, default=0.05, metavar="EPS",
                      help="finite-difference eps relative to each kernel's norm")
  args = parser.parse_args(argv)
  def title(result):
    c = result["config"]
    return (f"Gradient probe: {c.model.name}, T={c.model.T}, surrogate {c.model.surrogate}, "
            f"checkpoint step {result['step']}, {args.directions} directions, "
            f"eps = {args.step_size:g} x ||W||")

  return evaluate.report_main(
      lambda: probe_workdir(args.workdir, which=args.checkpoint, split=args.split,
                            num_batches=args.batches, batch_size=args.batch_size,
                            num_directions=args.directions, step_size=args.step_size,
                            seed=args.seed),
      lambda r: format_table(r["results"], title(r), r["inputs"]), plot, args.out, args.plot)


if __name__ == "__main__":
  sys.exit(main())
