"""Multi-seed ablations of snnjax's four methods on Fashion-MNIST: one driver, named studies.

A study is a grid of ``train.py`` runs: cells (one set of config flags each) x
seeds 0..n-1, every run with the same number of steps (the cosine schedule ends
there). Runs go one at a time into WORKDIR_ROOT/<study>/<preset>/<cell>/seed<k>;
a rerun skips finished runs and resumes unfinished ones from their checkpoints,
so a killed study is continued by running the same command again. Then it
writes to OUT_DIR:

    <study>.json   every run (accuracy, wall time, command), the statistics, hardware
    <study>.md     mean +- std per cell; paired differences with 95% t-intervals
    <study>.png    accuracy per cell (seeds as dots), training curves; extra figures:
                   <study>_chi.png (support fraction and half-width traces), <study>_noise.png
                   (accuracy under noise), <study>_probe.png (gradient probe)

Statistics: a cell's mean and sample standard deviation over seeds; for each
compared pair (cell, reference) the per-seed difference d_s = acc(cell, s) -
acc(reference, s) (paired by seed: same initialisation key and data order), its
mean and the 95% interval mean +- t_{0.975, n-1} * sd(d) / sqrt(n). Accuracy is
the test accuracy of the final step's weights (never the best checkpoint),
over the full 10,000-image test set. Seeds are 0..n-1, fixed before any run.

    python scripts/ablations.py --study sml --preset cpu
    python scripts/ablations.py --study gsg --preset gpu --workdir-root /scratch/ablations

Presets: ``cpu`` is sized for a 2-core CPU (width 1/8, about an epoch); ``gpu``
trains the same cells at full width for longer. ``--seeds`` and ``--steps``
override a preset (say so when reporting); ``--cells`` runs a subset.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import depth_experiment  # noqa: E402  (the depth experiment's run and probe pieces)

REPO = depth_experiment.REPO
TRAIN_EXAMPLES = depth_experiment.TRAIN_EXAMPLES

#: gsg_tanh's beta for the rows without the gradual schedule: the geometric mean of the
#: schedule's range (0.5 -> 5), so fixed and gradual rows have the same mean log-width.
GSG_FIXED_BETA = round(math.sqrt(0.5 * 5.0), 3)

#: Lipschitz weight of the SGS study: beta_lr * P is about 0.2 at initialisation (P = sum of
#: squared spectral norms ~ 20 for vgg_small width 1/8), a tenth of the initial loss ln 10.
SGS_LIPSCHITZ_WEIGHT = 0.01
SGS_DELTA = 0.5

#: Noise strengths of the "noise" extra (snnjax.robustness's kinds and units).
NOISES = {"gaussian": (0.0, 0.05, 0.1, 0.2, 0.3), "salt_pepper": (0.0, 0.02, 0.05, 0.1, 0.2)}


@dataclasses.dataclass(frozen=True)
class Study:
  """A named grid: cells of train.py flags, compared pairs, seeds and budget per preset.

  cells: cell name -> (label, flags); pairs: (cell, reference) paired differences;
  presets: preset -> (steps, seeds, flags every cell gets); extras beside the accuracy
  and training-curve figure: "chi" (support-fraction and half-width traces), "noise"
  (accuracy under input noise), "probe" (gradient probe at the final weights of the
  cells in ``probe_cells``).
  """
  name: str
  title: str
  config: str
  cells: dict[str, tuple[str, tuple[str, ...]]]
  pairs: tuple[tuple[str, str], ...]
  presets: dict[str, tuple[int, int, tuple[str, ...]]]
  claim: str
  extras: tuple[str, ...] = ()
  probe_cells: tuple[str, ...] = ()
  batch_size: int = 64
  train_examples: int = TRAIN_EXAMPLES   # the training split's size: the schedule's epochs


def _gpu(*flags: str) -> tuple[str, ...]:
  return ("--config.model.width=1.0", *flags)


_GSG_FIXED = (f"--config.model.surrogate=gsg_tanh(beta={GSG_FIXED_BETA})",
              "--config.estimator.schedule.param=")
_SGS_BASE = ("--config.sml.enabled=False", "--config.model.v_threshold=0.5")
_DEPTHS = (1, 4, 8, 16)


def _depth_cells() -> dict[str, tuple[str, tuple[str, ...]]]:
  cells = {}
  for depth in _DEPTHS:
    for variant, flags in depth_experiment.VARIANT_FLAGS.items():
      cells[f"{variant}_L{depth}"] = (f"{depth_experiment.VARIANT_LABELS[variant]}, L={depth}",
                                      (f"--config.model.options.depth={depth}", *flags))
  return cells


STUDIES = {s.name: s for s in [
    Study("sml", "Surrogate Module Learning on the default config",
          "configs/fmnist_vgg_sml.py",
          {"no_sml": ("SNN, no head", ("--config.sml.enabled=False",)),
           "sml": ("SNN + SML head after block 2 (default)", ())},
          (("sml", "no_sml"),),
          {"cpu": (937, 5, ()), "gpu": (9370, 5, _gpu("--config.sml.head_channels=256"))},
          claim="an SML head improves the deep SNN's accuracy (Surrogate Module Learning)"),
    Study("depth", "Depth experiment: ANN / SNN / SNN + SML for L in 1, 4, 8, 16",
          depth_experiment.CONFIG, _depth_cells(),
          tuple((f"sml_L{d}", f"snn_L{d}") for d in _DEPTHS)
          + tuple((f"snn_L{d}", f"ann_L{d}") for d in _DEPTHS),
          {"cpu": (3000, 3, ("--config.model.width=0.125",)),
           "gpu": (9370, 3, _gpu())},
          claim="the SNN collapses with depth while the ANN does not; SML closes much of the gap",
          extras=("probe",), probe_cells=("snn_L1", "sml_L1", "snn_L16", "sml_L16")),
    Study("gsg", "Gradual surrogate gradient with ISNM, T=5 (the paper's Table 1 rows)",
          "configs/fmnist_vgg_gsg.py",
          {"isnm": ("ISNM", ("--config.model.reset=hard", *_GSG_FIXED)),
           "isnm_soft": ("ISNM + soft reset", _GSG_FIXED),
           "isnm_gsg": ("ISNM + GSG", ("--config.model.reset=hard",)),
           "isnm_gsg_soft": ("ISNM + GSG + soft reset", ())},
          (("isnm_soft", "isnm"), ("isnm_gsg", "isnm"), ("isnm_gsg_soft", "isnm"),
           ("isnm_gsg_soft", "isnm_soft")),
          {"cpu": (468, 3, ("--config.model.T=5",)),
           "gpu": (9370, 3, _gpu("--config.model.T=5"))},
          claim="GSG adds accuracy over a fixed surrogate, soft reset adds a little more"),
    Study("chi", "chi-guided widths: a fixed rectangle vs the width controller",
          "configs/fmnist_vgg_chi.py",
          {"fixed": ("rectangle, fixed half-width 0.5",
                     ("--config.estimator.chi.enabled=False", "--config.estimator.chi.log=True")),
           "chi": ("rectangle, chi-guided widths (target 0.3)", ())},
          (("chi", "fixed"),),
          {"cpu": (937, 3, ()), "gpu": (9370, 3, _gpu())},
          claim="adapting each layer's width from chi improves accuracy over a fixed width",
          extras=("chi",)),
    Study("sgs", "Surrogate gradient scaling and Lipschitz regularisation",
          "configs/fmnist_vgg_sml.py",
          {"plain": ("rectangle (threshold 0.5)",
                     (*_SGS_BASE, "--config.model.surrogate=rectangle(alpha=1.0)")),
           "sgs": (f"SGS, delta={SGS_DELTA}",
                   (*_SGS_BASE, f"--config.model.surrogate=sgs(base=rectangle, alpha=1.0, "
                                f"delta={SGS_DELTA})")),
           "sgs_lr": (f"SGS + Lipschitz (beta_lr={SGS_LIPSCHITZ_WEIGHT})",
                      (*_SGS_BASE, f"--config.model.surrogate=sgs(base=rectangle, alpha=1.0, "
                                   f"delta={SGS_DELTA})",
                       f"--config.loss.lipschitz_weight={SGS_LIPSCHITZ_WEIGHT}"))},
          (("sgs", "plain"), ("sgs_lr", "plain"), ("sgs_lr", "sgs")),
          {"cpu": (937, 3, ()), "gpu": (9370, 3, _gpu())},
          claim="SGS improves accuracy; Lipschitz regularisation improves robustness to noise",
          extras=("noise",)),
    Study("sltt", "Gradient through time: BPTT vs SLTT on the default config",
          "configs/fmnist_vgg_sml.py",
          {"bptt": ("BPTT (default)", ()),
           "sltt": ("SLTT (one step at a time, memory independent of T)",
                    ("--config.gradient=sltt",))},
          (("sltt", "bptt"),),
          {"cpu": (937, 3, ()), "gpu": (9370, 3, _gpu("--config.sml.head_channels=256"))},
          claim="SLTT trains to about BPTT's accuracy while its memory does not grow with T "
                "(Towards Memory- and Time-Efficient Backpropagation for Training SNNs)"),
]}


# --- Running ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one invocation runs: a study at a preset, with its steps, seeds and cells."""
  study: Study
  preset: str
  steps: int
  seeds: int
  cells: tuple[str, ...]
  root: pathlib.Path

  def workdir(self, cell: str, seed: int) -> pathlib.Path:
    return self.root / self.study.name / self.preset / cell / f"seed{seed}"


def schedule_epochs(steps: int, batch_size: int, train_examples: int) -> float:
  """config.num_epochs of a run of ``steps`` steps: its schedule must reach ``steps``.

  train.py's schedule has ceil(num_epochs * floor(N / B)) steps (a partial last
  batch is dropped). steps * B / N, the fraction of the data seen, falls short
  of ``steps`` when the dropped batch matters (3000 steps of 64: 2999); then
  steps / floor(N / B) is used instead.
  """
  steps_per_epoch = train_examples // batch_size
  epochs = steps * batch_size / train_examples
  return epochs if math.ceil(epochs * steps_per_epoch) >= steps else steps / steps_per_epoch


def train_command(plan: Plan, cell: str, seed: int) -> list[str]:
  """train.py's command line for one (cell, seed): preset flags, then the cell's own."""
  study = plan.study
  epochs = schedule_epochs(plan.steps, study.batch_size, study.train_examples)
  return [sys.executable, "train.py", f"--config={study.config}",
          f"--workdir={plan.workdir(cell, seed)}",
          f"--config.batch_size={study.batch_size}", f"--config.max_steps={plan.steps}",
          f"--config.num_epochs={epochs!r}", f"--config.eval_every_epochs={epochs!r}",
          f"--config.seed={seed}", "--config.log_every_steps=25", "--config.progress_bar=False",
          *study.presets[plan.preset][2], *study.cells[cell][1]]


def run_grid(plan: Plan) -> list[dict[str, Any]]:
  """Every (cell, seed) run, seed-major so a partial study has whole seeds of every cell."""
  rows = []
  for seed in range(plan.seeds):
    for cell in plan.cells:
      rows.append(depth_experiment.run_train(
          f"{plan.study.name}/{cell} seed {seed}", train_command(plan, cell, seed),
          plan.workdir(cell, seed), plan.steps, {"cell": cell, "seed": seed}))
  return rows


def noise_run(workdir: pathlib.Path, steps: int) -> dict[str, dict[str, float]] | None:
  """Accuracy under Gaussian and salt-and-pepper noise of a finished run's final weights.

  Cached in WORKDIR/noise.json: {"gaussian": {"0.1": acc, ...}, "salt_pepper": {...}};
  noise draws from key 0 (:func:`snnjax.robustness.evaluate_workdir`). None if unfinished.
  """
  cache = workdir / "noise.json"
  noises = {kind: list(strengths) for kind, strengths in NOISES.items()}
  if cache.exists():
    cached = json.loads(cache.read_text())
    if cached["noises"] == noises:
      return cached["results"]
  if depth_experiment.final_eval(workdir, steps) is None:
    return None
  from snnjax import robustness
  print(f"[noise {workdir}]", flush=True)
  out = robustness.evaluate_workdir(workdir, noises, which="latest", seed=0)
  results = {kind: {f"{s:g}": acc for s, acc in row.items()}
             for kind, row in out["results"].items()}
  cache.write_text(json.dumps({"noises": noises, "results": results}, indent=1))
  return results


def train_curve(workdir: pathlib.Path, key: str = "snn_ce") -> list[tuple[int, float]]:
  """(step, value) of a logged training metric, e.g. "chi/sn3".

  "snn_ce" is the SNN's own cross-entropy: "ce_main" where SML heads add their
  losses to "loss", else "loss" (which then includes a Lipschitz penalty, if on).
  """
  from snnjax.train.metrics import read_metrics
  if not (workdir / "metrics.jsonl").exists():
    return []
  curve = []
  for r in read_metrics(workdir):
    name = ("ce_main" if "ce_main" in r else "loss") if key == "snn_ce" else key
    if r.get("kind") == "train" and name in r:
      curve.append((r["step"], r[name]))
  return curve


# --- Statistics -------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
  n = len(values)
  mean = sum(values) / n
  var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
  return mean, math.sqrt(var)


def paired_difference(cell: dict[int, float], reference: dict[int, float]) -> dict[str, Any]:
  """Mean of d_s = cell[s] - reference[s] over the seeds both have, with its 95% t-interval.

  The interval is mean +- t_{0.975, n-1} sd(d) / sqrt(n) (scipy.stats.t); it needs n >= 2.
  """
  from scipy import stats
  seeds = sorted(set(cell) & set(reference))
  diffs = [cell[s] - reference[s] for s in seeds]
  if not diffs:
    return {"n": 0}
  mean, sd = mean_std(diffs)
  n = len(diffs)
  half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan
  return {"n": n, "seeds": seeds, "diffs": diffs, "mean": mean, "sd": sd,
          "ci": [mean - half, mean + half],
          "wins": sum(d > 0 for d in diffs)}


def summarise(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Per cell accuracies by seed, mean and std; per pair the paired difference."""
  by_cell = {c: {r["seed"]: r["test_accuracy"] for r in rows
                 if r["cell"] == c and r["test_accuracy"] is not None} for c in plan.cells}
  cells = {}
  for c, accs in by_cell.items():
    mean, std = mean_std(list(accs.values())) if accs else (math.nan, math.nan)
    cells[c] = {"label": plan.study.cells[c][0], "by_seed": accs, "mean": mean, "std": std,
                "n": len(accs)}
  pairs = [{"cell": a, "reference": b, **paired_difference(by_cell[a], by_cell[b])}
           for a, b in plan.study.pairs if a in by_cell and b in by_cell]
  return {"cells": cells, "pairs": pairs}


def noise_summary(plan: Plan, noise: dict[tuple[str, int], dict]) -> dict[str, Any]:
  """Per cell, noise and strength: mean and std over seeds; the pairs at every strength."""
  out: dict[str, Any] = {"cells": {}, "pairs": []}
  for cell in plan.cells:
    runs = {s: r for (c, s), r in noise.items() if c == cell}
    out["cells"][cell] = {kind: {k: dict(zip(("mean", "std"),
                                             mean_std([runs[s][kind][k] for s in runs])))
                                 for k in next(iter(runs.values()))[kind]}
                          for kind in NOISES} if runs else {}
  for a, b in plan.study.pairs:
    for kind in NOISES:
      strengths = out["cells"].get(a, {}).get(kind, {})
      for k in strengths:
        pa = {s: r[kind][k] for (c, s), r in noise.items() if c == a}
        pb = {s: r[kind][k] for (c, s), r in noise.items() if c == b}
        out["pairs"].append({"cell": a, "reference": b, "noise": kind, "strength": k,
                             **paired_difference(pa, pb)})
  return out


def curve_window(curve: list[tuple[int, float]], lo: float, hi: float) -> list[float]:
  """The values logged at lo * S < step <= hi * S, S the curve's last step ([] if empty)."""
  final = curve[-1][0] if curve else 0
  return [v for step, v in curve if lo * final < step <= hi * final]


def tail_change(curve: list[tuple[int, float]], fraction: float = 0.1) -> float | None:
  """How much a training curve still moved at its end: mean(last) / mean(before) - 1.

  last: the values logged in the final ``fraction`` of the steps, (1 - f) S < step <= S;
  before: the fraction ahead of it, (1 - 2f) S < step <= (1 - f) S. Negative while
  the loss still falls; None when either window holds no value.
  """
  last = curve_window(curve, 1 - fraction, 1.0)
  before = curve_window(curve, 1 - 2 * fraction, 1 - fraction)
  if not last or not before or not statistics.fmean(before):
    return None
  return float(statistics.fmean(last) / statistics.fmean(before) - 1)


# --- Reports ----------------------------------------------------------------------------------


def _pct(x: float) -> str:
  return "-" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def _pair_row(p: dict[str, Any], labels: dict[str, str]) -> str:
  if p["n"] == 0:
    return f"| {labels[p['cell']]} | {labels[p['reference']]} | 0 | - | - | - |"
  lo, hi = p["ci"]
  interval = "-" if not math.isfinite(lo) else f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"
  return (f"| {labels[p['cell']]} | {labels[p['reference']]} | {p['n']} | "
          f"{100 * p['mean']:+.2f} | {interval} | {p['wins']}/{p['n']} |")


def markdown(plan: Plan, rows: list[dict[str, Any]], summary: dict[str, Any], command: str,
             hw: dict[str, str], extras: dict[str, Any]) -> str:
  """<study>.md: budget, accuracy table, paired differences, extras, command, hardware."""
  study = plan.study
  labels = {c: study.cells[c][0] for c in study.cells}
  seeds = sorted({r["seed"] for r in rows})
  epochs = schedule_epochs(plan.steps, study.batch_size, study.train_examples)
  wall = [r["wall_s"] for r in rows if r.get("wall_s") is not None]
  lines = [f"# {study.title}", "", f"![{study.name}]({study.name}.png)", "",
           f"Claim tested: {study.claim}.", "",
           f"Budget of every run: {plan.steps} steps of batch {study.batch_size} "
           f"({epochs:.2f} epochs), `{study.config}` with preset `{plan.preset}` "
           f"(flags of every cell: `{' '.join(study.presets[plan.preset][2]) or 'none'}`), "
           f"seeds {', '.join(map(str, seeds))}. Test accuracy of the final weights on the "
           "10,000 test images.", "",
           "## Test accuracy (%)", "",
           "| cell | flags | n | mean | std | " + " | ".join(f"seed {s}" for s in seeds) + " |",
           "|---|---|---:|---:|---:|" + "---:|" * len(seeds)]
  for c in plan.cells:
    s = summary["cells"][c]
    flags = " ".join(f"`{f.removeprefix('--config.')}`" for f in study.cells[c][1]) or "(config)"
    lines.append(f"| {labels[c]} | {flags} | {s['n']} | {_pct(s['mean'])} | {_pct(s['std'])} | "
                 + " | ".join(_pct(s["by_seed"].get(k)) for k in seeds) + " |")
  lines += ["", "## Paired differences (points; cell minus reference, paired by seed)", "",
            "| cell | reference | n | mean | 95% interval | cell better |",
            "|---|---|---:|---:|---|---:|"]
  lines += [_pair_row(p, labels) for p in summary["pairs"]]
  lines += plateau_markdown(plan, labels, seeds)
  if "noise" in extras:
    lines += noise_markdown(plan, extras["noise"], labels)
  if "probe" in extras:
    lines += probe_markdown(extras["probe"], labels)
  if "traces" in extras:
    lines += traces_markdown(plan, extras["traces"], labels)
  lines += ["", "## Reproduce", "", "```", command, "```", "",
            "One run (cell, seed), as the driver starts it:", "", "```",
            rows[0]["command"] if rows else "", "```", "",
            f"Wall time: {sum(wall) / 60:.1f} min for {len(wall)} runs, one at a time "
            f"(start-up, compilation and evaluation included; JAX's compilation cache shared "
            "between runs).", "", "## Hardware", "",
            *[f"- {k}: {v}" for k, v in hw.items()], ""]
  return "\n".join(lines)


def plateau_markdown(plan: Plan, labels: dict[str, str], seeds: list[int]) -> list[str]:
  """Per cell: the SNN's training CE at the end and how much it moved in the last tenth."""
  lines = ["", "## Training loss at the end (has it levelled off?)", "",
           "The SNN's training cross-entropy averaged over the last tenth of the steps, and its "
           "change against the tenth before (`tail_change` in scripts/ablations.py; negative: "
           "still falling). Each logged point is a mean over one logging interval, so single "
           "seeds move by a few percent either way.", "",
           "| cell | final-tenth CE (mean) | change, mean | change per seed |",
           "|---|---:|---:|---|"]
  for c in plan.cells:
    curves = {s: train_curve(plan.workdir(c, s)) for s in seeds}
    changes = {s: tail_change(cv) for s, cv in curves.items()}
    known = [v for v in changes.values() if v is not None]
    finals = [statistics.fmean(curve_window(cv, 0.9, 1.0)) for cv in curves.values() if cv]
    change = lambda v: "-" if v is None else f"{100 * v:+.1f} %"
    lines.append(f"| {labels[c]} | "
                 + (f"{statistics.fmean(finals):.4f}" if finals else "-") + " | "
                 + change(statistics.fmean(known) if known else None) + " | "
                 + ", ".join(change(changes[s]) for s in seeds) + " |")
  return lines


def noise_markdown(plan: Plan, noise: dict[str, Any], labels: dict[str, str]) -> list[str]:
  """Accuracy under noise, mean +- std per cell and strength, and the strongest noise's pairs."""
  lines = ["", "## Accuracy under input noise (%, mean +- std over seeds)", "",
           "Final weights; `snnjax.robustness` noise on the [0, 1] pixel scale, key 0.", ""]
  from snnjax.robustness import NOISE_LABELS
  for kind in NOISES:
    strengths = next((v[kind] for v in noise["cells"].values() if v), {})
    lines += [f"| {NOISE_LABELS[kind]} |" + "".join(f" {labels[c]} |" for c in plan.cells),
              "|---:|" + "---:|" * len(plan.cells)]
    for k in strengths:
      cells = [noise["cells"][c].get(kind, {}).get(k) for c in plan.cells]
      lines.append(f"| {k} |" + "".join(
          f" {100 * v['mean']:.2f} +- {100 * v['std']:.2f} |" if v else " - |" for v in cells))
    lines.append("")
  lines += ["Paired differences at each noise's strongest setting:", "",
            "| cell | reference | n | mean | 95% interval | cell better |",
            "|---|---|---:|---:|---|---:|"]
  for kind in NOISES:
    pairs = [p for p in noise["pairs"] if p["noise"] == kind]
    strongest = max((p["strength"] for p in pairs), key=float, default=None)
    for p in pairs:
      if p["strength"] == strongest:
        lines.append(_pair_row(p, {**labels, p["cell"]: f"{labels[p['cell']]} ({kind} "
                                   f"{strongest})"}))
  return lines


def probe_markdown(probes: dict[str, list[dict]], labels: dict[str, str]) -> list[str]:
  """Per probed cell: each layer's cosine with finite differences, mean over seeds."""
  lines = ["", "## Gradient probe at the final weights (cosine with finite differences of the "
           "spiking loss, mean over seeds; min..max of the seeds)", ""]
  for cell, runs in probes.items():
    if not runs:
      continue
    lines += [f"### {labels[cell]} ({len(runs)} seeds, {runs[0]['directions']} directions)", "",
              "| # | layer | cosine | min..max |", "|---:|---|---:|---|"]
    for i, layer in enumerate(runs[0]["layers"]):
      values = [r["layers"][i]["cosine"] for r in runs]
      lines.append(f"| {i + 1} | {layer['layer']} | {sum(values) / len(values):.2f} | "
                   f"{min(values):.2f}..{max(values):.2f} |")
    lines.append("")
  return lines


def traces_markdown(plan: Plan, traces: dict[str, Any], labels: dict[str, str]) -> list[str]:
  """Support fraction and half-width per neuron layer at the last logged step, seed means."""
  layers = sorted({k for v in traces["support_fraction"].values() for k in v})
  lines = ["", f"## Support fraction and half-width at the last logged step (seed means; "
           f"![traces]({plan.study.name}_chi.png))", "",
           "| cell | " + " | ".join(layers) + " |", "|---|" + "---:|" * len(layers)]
  for what, table in traces.items():
    for c, values in table.items():
      lines.append(f"| {labels[c]}: {what} | "
                   + " | ".join(f"{values[k]:.3f}" if k in values else "-" for k in layers) + " |")
  return lines


def _colors(cells: Sequence[str]) -> dict[str, Any]:
  import matplotlib
  cmap = matplotlib.colormaps["tab10"]
  return {c: cmap(i % 10) for i, c in enumerate(cells)}


def plot_study(plan: Plan, summary: dict[str, Any], path: pathlib.Path) -> None:
  """Left: accuracy per cell (mean +- std, seeds as dots); right: training loss, mean and range."""
  from snnjax import evaluate
  plt = evaluate.pyplot()
  colors = _colors(plan.cells)
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2),
                                    gridspec_kw={"width_ratios": [1, 1.3]})
  for i, c in enumerate(plan.cells):
    s = summary["cells"][c]
    if not s["n"]:
      continue
    left.errorbar([i], [100 * s["mean"]], yerr=[100 * s["std"]], fmt="o", color=colors[c],
                  capsize=4, ms=7)
    left.scatter([i + 0.12] * s["n"], [100 * v for v in s["by_seed"].values()], s=12,
                 color=colors[c], alpha=0.6)
  left.set_xticks(range(len(plan.cells)), [plan.study.cells[c][0] for c in plan.cells],
                  rotation=25, ha="right", fontsize=7)
  left.set_ylabel("test accuracy (%)")
  left.grid(alpha=0.3)
  left.set_title("final test accuracy: mean +- std, seeds as dots", fontsize=9)
  for c in plan.cells:
    curves = [train_curve(plan.workdir(c, s)) for s in range(plan.seeds)]
    _band(right, [cv for cv in curves if cv], colors[c], plan.study.cells[c][0])
  right.set_xlabel("step")
  right.set_ylabel("SNN cross-entropy (logged batches)")
  right.set_yscale("log")
  right.grid(alpha=0.3)
  right.legend(fontsize=7)
  right.set_title("training loss of the SNN (without head losses): mean over seeds, band = "
                  "min..max", fontsize=9)
  fig.suptitle(f"{plan.study.title} ({plan.preset} preset, {plan.steps} steps)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _band(ax, curves: list[list[tuple[int, float]]], color, label: str, ls: str = "-") -> None:
  """Mean line and min..max band over curves that share their steps (up to the shortest)."""
  if not curves:
    return
  n = min(len(c) for c in curves)
  steps = [p[0] for p in curves[0][:n]]
  values = [[c[i][1] for c in curves] for i in range(n)]
  ax.plot(steps, [sum(v) / len(v) for v in values], color=color, label=label, lw=1.3, ls=ls)
  ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=color,
                  alpha=0.2, lw=0)


def neuron_layers(workdir: pathlib.Path) -> list[str]:
  """Neuron layers with a logged support fraction ("support_fraction/<layer>"), in log order."""
  from snnjax.train.metrics import read_metrics
  for r in read_metrics(workdir):
    if r.get("kind") == "train":
      names = [k.removeprefix("support_fraction/") for k in r if k.startswith("support_fraction/")]
      if names:
        return names
  return []


def plot_chi(plan: Plan, path: pathlib.Path) -> None:
  """Per neuron layer: the support fraction the controller steers (top) and the half-width (bottom).

  The support fraction is the share of a layer's neurons (over T and the batch) whose
  surrogate derivative is non-zero (:func:`snnjax.chi.support_fractions`); the fixed
  cell's half-width is constant and not logged.
  """
  from snnjax import evaluate
  plt = evaluate.pyplot()
  first = plan.workdir(plan.cells[0], 0)
  layers = neuron_layers(first) if (first / "metrics.jsonl").exists() else []
  if not layers:
    return
  colors = _colors(plan.cells)
  fig, axes = plt.subplots(2, len(layers), figsize=(2.3 * len(layers), 4.8), squeeze=False,
                           sharex=True)
  for j, layer in enumerate(layers):
    for c in plan.cells:
      for row, key in ((0, f"support_fraction/{layer}"), (1, f"halfwidth/{layer}")):
        curves = [train_curve(plan.workdir(c, s), key) for s in range(plan.seeds)]
        _band(axes[row][j], [cv for cv in curves if cv], colors[c], plan.study.cells[c][0])
    axes[0][j].set_title(layer, fontsize=8)
    axes[1][j].set_xlabel("step", fontsize=8)
  axes[0][0].set_ylabel("support fraction\n(neurons with h' > 0)", fontsize=8)
  axes[1][0].set_ylabel("half-width w", fontsize=8)
  for ax in axes.flat:
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(plan.cells),
             frameon=False)
  fig.suptitle("Support fraction and surrogate half-width per neuron layer (mean over seeds, "
               "band = min..max; the fixed cell's half-width is 0.5 throughout)", fontsize=9)
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)


def trace_summary(plan: Plan, prefix: str) -> dict[str, dict[str, float]]:
  """Per cell and layer: the logged ``prefix/<layer>`` value at the last logged step, seed mean."""
  out: dict[str, dict[str, float]] = {}
  for c in plan.cells:
    for s in range(plan.seeds):
      w = plan.workdir(c, s)
      if not (w / "metrics.jsonl").exists():
        continue
      for layer in neuron_layers(w):
        curve = train_curve(w, f"{prefix}/{layer}")
        if curve:
          out.setdefault(c, {}).setdefault(layer, []).append(curve[-1][1])
  return {c: {k: sum(v) / len(v) for k, v in layers.items()} for c, layers in out.items()}


def plot_noise(plan: Plan, noise: dict[str, Any], path: pathlib.Path) -> None:
  """Accuracy vs noise strength per cell: mean over seeds, band = +- std."""
  from snnjax import evaluate
  from snnjax.robustness import NOISE_LABELS
  plt = evaluate.pyplot()
  colors = _colors(plan.cells)
  fig, axes = plt.subplots(1, len(NOISES), figsize=(10, 3.8))
  for ax, kind in zip(axes, NOISES):
    for c in plan.cells:
      row = noise["cells"][c].get(kind)
      if not row:
        continue
      xs = [float(k) for k in row]
      mean = [100 * v["mean"] for v in row.values()]
      std = [100 * v["std"] for v in row.values()]
      ax.plot(xs, mean, marker="o", ms=4, color=colors[c], label=plan.study.cells[c][0])
      ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                      color=colors[c], alpha=0.2, lw=0)
    ax.set_xlabel(NOISE_LABELS[kind])
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle("Accuracy under input noise, final weights (mean over seeds, band = +- std)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_probe(plan: Plan, probes: dict[str, list[dict]], path: pathlib.Path) -> None:
  """Per probed cell, cosine per layer: mean over seeds, band = min..max."""
  from snnjax import evaluate
  plt = evaluate.pyplot()
  colors = _colors(list(probes))
  fig, ax = plt.subplots(figsize=(9, 4))
  for cell, runs in probes.items():
    if not runs:
      continue
    xs = list(range(1, len(runs[0]["layers"]) + 1))
    curves = [[(x, l["cosine"]) for x, l in zip(xs, r["layers"])] for r in runs]
    _band(ax, curves, colors[cell], plan.study.cells[cell][0],
          ls="--" if cell.startswith("sml") else "-")
  ax.axhline(0, color="grey", lw=0.8)
  ax.set_xlabel("layer (input -> output)")
  ax.set_ylabel("cosine with FD of the spiking loss")
  ax.set_ylim(-1.05, 1.05)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title("Gradient probe at the final weights (mean over seeds, band = min..max)",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# --- Command line -----------------------------------------------------------------------------


def _cell_list(text: str, study: Study) -> tuple[str, ...]:
  cells = tuple(c.strip() for c in text.split(",") if c.strip()) or tuple(study.cells)
  unknown = [c for c in cells if c not in study.cells]
  if unknown:
    raise ValueError(f"--cells: unknown cell {unknown[0]!r} of study {study.name!r}; "
                     f"choose from {', '.join(study.cells)}")
  return cells


def parse_plan(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study", required=True, choices=sorted(STUDIES))
  parser.add_argument("--preset", default="cpu", choices=("cpu", "gpu"))
  parser.add_argument("--seeds", type=int, default=None, help="override the preset's seed count")
  parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
  parser.add_argument("--cells", default="", help="comma-separated subset of the study's cells")
  parser.add_argument("--probe-directions", type=int, default=16)
  parser.add_argument("--workdir-root", type=pathlib.Path, default=pathlib.Path("/tmp/ablations"))
  parser.add_argument("--out-dir", type=pathlib.Path, default=REPO / "docs" / "ablations")
  args = parser.parse_args(argv)
  study = STUDIES[args.study]
  steps, seeds, _ = study.presets[args.preset]
  steps = args.steps if args.steps is not None else steps
  seeds = args.seeds if args.seeds is not None else seeds
  if steps < 1 or seeds < 1:
    parser.error(f"--steps={steps} and --seeds={seeds} must both be >= 1")
  try:
    cells = _cell_list(args.cells, study)
  except ValueError as e:
    parser.error(str(e))
  return Plan(study, args.preset, steps, seeds, cells, args.workdir_root.resolve()), args


def main(argv: Sequence[str] | None = None) -> int:
  plan, args = parse_plan(argv)
  command = "python " + shlex.join(["scripts/ablations.py"] + list(
      sys.argv[1:] if argv is None else argv))
  from snnjax import xla_flags
  xla_flags.apply()
  start = time.time()
  try:
    rows = run_grid(plan)
  except ValueError as e:  # a workdir holding another command's run
    print(f"error: {e}", file=sys.stderr)
    return 2
  summary = summarise(plan, rows)
  out = args.out_dir
  out.mkdir(parents=True, exist_ok=True)
  extras: dict[str, Any] = {}
  finished = [(r["cell"], r["seed"]) for r in rows if r["test_accuracy"] is not None]
  if "noise" in plan.study.extras:
    runs = {(c, s): noise_run(plan.workdir(c, s), plan.steps) for c, s in finished}
    extras["noise"] = noise_summary(plan, {k: v for k, v in runs.items() if v is not None})
    plot_noise(plan, extras["noise"], out / f"{plan.study.name}_noise.png")
  if "probe" in plan.study.extras and args.probe_directions > 0:
    extras["probe"] = {c: [p for s in range(plan.seeds) if (c, s) in finished
                           for p in [depth_experiment.probe_run(plan.workdir(c, s), plan.steps,
                                                                args.probe_directions, s)]
                           if p is not None]
                       for c in plan.study.probe_cells if c in plan.cells}
    plot_probe(plan, extras["probe"], out / f"{plan.study.name}_probe.png")
  if "chi" in plan.study.extras:
    plot_chi(plan, out / f"{plan.study.name}_chi.png")
    extras["traces"] = {"support_fraction": trace_summary(plan, "support_fraction"),
                        "halfwidth": trace_summary(plan, "halfwidth")}
  hw = depth_experiment.hardware()
  plot_study(plan, summary, out / f"{plan.study.name}.png")
  results = {"study": plan.study.name, "preset": plan.preset, "steps": plan.steps,
             "seeds": plan.seeds, "cells": list(plan.cells), "command": command, "hardware": hw,
             "runs": rows, "summary": summary, **extras,
             "train_wall_s": round(sum(r["wall_s"] for r in rows), 1),
             "driver_wall_s": round(time.time() - start, 1)}
  (out / f"{plan.study.name}.json").write_text(json.dumps(results, indent=1) + "\n")
  (out / f"{plan.study.name}.md").write_text(markdown(plan, rows, summary, command, hw, extras))
  print(f"wrote {out}/{plan.study.name}.md, .json, .png in {(time.time() - start) / 60:.1f} min")
  for p in summary["pairs"]:
    if p["n"]:
      print(f"  {p['cell']} - {p['reference']}: {100 * p['mean']:+.2f} points "
            f"(95% [{100 * p['ci'][0]:+.2f}, {100 * p['ci'][1]:+.2f}], n={p['n']})")
  return 0 if len(finished) == len(rows) else 1


if __name__ == "__main__":
  sys.exit(main())
