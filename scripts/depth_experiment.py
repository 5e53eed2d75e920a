"""The depth experiment of Surrogate Module Learning (its Fig. 2) on Fashion-MNIST.

Trains ``depth_net`` (stem 3C64s1-3C64s2-3C128s2, then L x 3C128s1, adaptive
avg-pool 2, FC; T=4) for every depth L and variant with the same budget:

    ann   ReLU network (--config.model.options.ann=True, no SML heads)
    snn   plain SNN (--config.sml.enabled=False)
    sml   SNN + one surrogate module after block 3 (configs/fmnist_depth.py)

Each (variant, L) runs ``train.py`` as a subprocess in WORKDIR_ROOT/<variant>_L<L>;
a run that already finished is not trained again (its accuracy and wall time
are read back), one that stopped early resumes from its checkpoint. Then the
gradient probe (:mod:`snnjax.probe`) runs on the SNN and SML runs of the
shallowest and the deepest L (or of --probe-depths). Writes to --out-dir:

    depth_results.json   every run: accuracy, wall time, command; probe cosines
    depth.md, depth.png  accuracy vs depth, one line per variant
    probe.md, probe.png  surrogate-gradient cosine per layer

    python scripts/depth_experiment.py --depths 1,2,4,8 --variants ann,snn,sml \
        --steps 300 --width 0.125 --batch-size 64 --workdir-root /tmp/depth --out-dir docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIG = "configs/fmnist_depth.py"
TRAIN_EXAMPLES = 60000
VARIANT_FLAGS = {
    "ann": ["--config.sml.enabled=False", "--config.model.options.ann=True"],
    "snn": ["--config.sml.enabled=False"],
    "sml": [],
}
VARIANT_LABELS = {"ann": "ANN (ReLU)", "snn": "SNN (T=4)", "sml": "SNN + SML"}
VARIANT_COLORS = {"ann": "black", "snn": "tab:red", "sml": "tab:blue"}


def train_command(args: argparse.Namespace, variant: str, depth: int,
                  workdir: pathlib.Path) -> list[str]:
  """The train.py command line of one run; the cosine schedule ends at --steps."""
  epochs = args.steps * args.batch_size / TRAIN_EXAMPLES
  return [
      sys.executable, "train.py", f"--config={CONFIG}", f"--workdir={workdir}",
      f"--config.model.options.depth={depth}", f"--config.model.width={args.width}",
      f"--config.batch_size={args.batch_size}", f"--config.max_steps={args.steps}",
      f"--config.num_epochs={epochs!r}", f"--config.eval_every_epochs={epochs!r}",
      f"--config.seed={args.seed}", "--config.log_every_steps=50",
      "--config.progress_bar=False", *VARIANT_FLAGS[variant]]


def final_eval(workdir: pathlib.Path, steps: int) -> dict[str, Any] | None:
  """The eval record of step ``steps`` in WORKDIR/metrics.jsonl, or None."""
  from snnjax.train.metrics import read_metrics
  if not (workdir / "metrics.jsonl").exists():
    return None
  evals = [r for r in read_metrics(workdir) if r.get("kind") == "eval" and r["step"] == steps]
  return evals[-1] if evals else None


def run_train(label: str, command: list[str], workdir: pathlib.Path, steps: int,
              fields: dict[str, Any]) -> dict[str, Any]:
  """Runs one train.py ``command`` in ``workdir`` unless it finished before; its result row.

  The command is recorded in WORKDIR/train_command.txt when the run starts; a
  workdir that holds another command's run raises ValueError (nothing in it is
  touched), so a changed budget never continues an old run. A run has finished
  when WORKDIR/run.json exists and metrics.jsonl holds the eval of step
  ``steps``; then nothing is trained and the stored row is returned. Otherwise
  train.py runs (resuming from its checkpoint, if any) with its output in
  WORKDIR/train.log. The row is ``fields`` plus workdir, command, returncode,
  wall_s (start-up, compilation and evaluation included), test_accuracy and
  test_loss (None if the run failed).
  """
  record_path = workdir / "run.json"
  command_path = workdir / "train_command.txt"
  shown = shlex.join(["python"] + command[1:])
  if command_path.exists() and command_path.read_text().strip() != shown:
    raise ValueError(f"{workdir} holds a run of another command: "
                     f"{command_path.read_text().strip()}; use another --workdir-root")
  if record_path.exists() and final_eval(workdir, steps) is not None:
    print(f"[{label}] finished before, reusing {workdir}", flush=True)
    return json.loads(record_path.read_text())
  workdir.mkdir(parents=True, exist_ok=True)
  command_path.write_text(shown + "\n")
  print(f"[{label}] {shown}", flush=True)
  start = time.time()
  with open(workdir / "train.log", "a") as log:
    proc = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  wall = time.time() - start
  done = final_eval(workdir, steps)
  row = {**fields, "workdir": str(workdir), "command": shown, "returncode": proc.returncode,
         "wall_s": round(wall, 1),
         "test_accuracy": done["test_accuracy"] if done else None,
         "test_loss": done.get("test_loss") if done else None}
  if done is None:
    print(f"[{label}] FAILED (rc {proc.returncode}); see {workdir}/train.log", flush=True)
  else:
    record_path.write_text(json.dumps(row, indent=1))
    print(f"[{label}] test accuracy {row['test_accuracy']:.4f}, {wall:.0f} s", flush=True)
  return row


def run_one(args: argparse.Namespace, variant: str, depth: int) -> dict[str, Any]:
  """Trains one (variant, depth) unless it already finished; returns its result row."""
  workdir = args.workdir_root / f"{variant}_L{depth}"
  return run_train(f"{variant} L={depth}", train_command(args, variant, depth, workdir), workdir,
                   args.steps, {"variant": variant, "depth": depth})


def probe_run(workdir: pathlib.Path, steps: int, directions: int, seed: int) -> dict | None:
  """Gradient probe of a finished run's last checkpoint, cached in WORKDIR/probe.json.

  Per conv/dense layer of the network (SML heads' own layers left out): the
  cosine of the surrogate gradient with finite differences of the spiking loss,
  its 95% interval, the relative error and the reference estimators' cosines
  (:func:`snnjax.probe.probe_workdir`, one training batch). None if the run has
  not finished.
  """
  cache = workdir / "probe.json"
  if cache.exists():
    cached = json.loads(cache.read_text())
    if cached.get("directions") == directions:
      return cached
  if final_eval(workdir, steps) is None:
    return None
  from snnjax import probe
  print(f"[probe {workdir}] {directions} directions", flush=True)
  start = time.time()
  out = probe.probe_workdir(workdir, which="latest", num_batches=1, num_directions=directions,
                            seed=seed)
  layers = []
  for r in out["results"]:
    if "sml_head" in r.layer:  # the probe measures the SNN loss; heads do not affect it
      continue
    layers.append({"layer": r.layer, "size": int(r.size), "cosine": float(r.cosine),
                   "cosine_ci": [float(v) for v in r.cosine_ci],
                   "relative_error": float(r.relative_error),
                   "references": {name: {"cosine": float(c), "ci": [float(v) for v in ci]}
                                  for name, (c, ci) in r.references.items()}})
  result = {"step": int(out["step"]), "directions": directions,
            "wall_s": round(time.time() - start, 1), "layers": layers}
  cache.write_text(json.dumps(result, indent=1))
  return result


def probe_one(args: argparse.Namespace, variant: str, depth: int) -> dict[str, Any] | None:
  """Gradient probe of one finished (variant, depth) run."""
  result = probe_run(args.workdir_root / f"{variant}_L{depth}", args.steps,
                     args.probe_directions, args.seed)
  return None if result is None else {"variant": variant, "depth": depth, **result}


def hardware() -> dict[str, str]:
  """CPU model, core count, platform and library versions."""
  import jax
  info = {"nproc": str(os.cpu_count()), "platform": platform.platform(),
          "python": platform.python_version(), "jax": jax.__version__,
          "jax_backend": jax.default_backend(), "devices": str(jax.devices())}
  try:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in lscpu.splitlines():
      key, _, value = line.partition(":")
      if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core"):
        info["lscpu " + key.strip()] = value.strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return info


def _fmt(x: float | None) -> str:
  return "failed" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def plot_depth(rows: list[dict[str, Any]], variants: list[str], depths: list[int],
               path: pathlib.Path, subtitle: str) -> None:
  """Test accuracy vs depth L, one line per variant."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5.6, 3.9))
  for variant in variants:
    pts = sorted((r["depth"], 100 * r["test_accuracy"]) for r in rows
                 if r["variant"] == variant and r["test_accuracy"] is not None)
    if pts:
      xs, ys = zip(*pts)
      ax.plot(xs, ys, marker="o", label=VARIANT_LABELS[variant], color=VARIANT_COLORS[variant])
  ax.set_xscale("log", base=2)
  ax.set_xticks(depths, [str(d) for d in depths])
  ax.set_xlabel("extra 3C128s1 layers L")
  ax.set_ylabel("Fashion-MNIST test accuracy (%)")
  ax.set_title("depth_net accuracy vs depth\n" + subtitle, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)


def plot_probes(probes: list[dict[str, Any]], path: pathlib.Path) -> None:
  """One panel per probed depth: cosine per layer of the SNN and SML runs (and SML's head)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  depths = sorted({p["depth"] for p in probes})
  # One panel per depth, stacked; each panel's width follows its layer count.
  counts = [max(len(p["layers"]) for p in probes if p["depth"] == d) for d in depths]
  width = max(5.5, 0.42 * max(counts) + 2.0)
  fig, axes = plt.subplots(len(depths), 1, figsize=(width, 2.9 * len(depths) + 0.9),
                           squeeze=False)
  axes = axes.T
  styles = {("snn", "surrogate"): dict(color=VARIANT_COLORS["snn"]),
            ("sml", "surrogate"): dict(color=VARIANT_COLORS["sml"]),
            ("sml", "head"): dict(color="tab:green", ls="--")}
  for ax, depth in zip(axes[0], depths):
    shift = -0.1
    runs = sorted((p for p in probes if p["depth"] == depth), key=lambda p: p["variant"] != "snn")
    for p in runs:
      series = [("surrogate", VARIANT_LABELS[p["variant"]] + ": surrogate gradient",
                 [l["cosine"] for l in p["layers"]], [l["cosine_ci"] for l in p["layers"]])]
      for name in p["layers"][0]["references"] if p["layers"] else []:
        if name.startswith("head_"):
          series.append(("head", VARIANT_LABELS[p["variant"]] + f": gradient of the SM's loss "
                         f"({name})", [l["references"][name]["cosine"] for l in p["layers"]],
                         [l["references"][name]["ci"] for l in p["layers"]]))
      for kind, label, values, cis in series:
        x = [i + 1 + shift for i, v in enumerate(values) if math.isfinite(v)]
        v = [v for v in values if math.isfinite(v)]
        ci = [c for c, val in zip(cis, values) if math.isfinite(val)]
        if not v:
          continue
        lo = [a - c[0] for a, c in zip(v, ci)]
        hi = [c[1] - a for a, c in zip(v, ci)]
        ax.errorbar(x, v, yerr=[lo, hi], marker="o", ms=4, capsize=2, lw=1.3,
                    label=label, **styles.get((p["variant"], kind), {}))
        shift += 0.1
    names = next(p["layers"] for p in probes if p["depth"] == depth)
    ax.set_xticks(range(1, len(names) + 1), [l["layer"] for l in names], rotation=60,
                  ha="right", fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(f"L = {depth} (after {runs[0]['step']} steps)", fontsize=9)
  axes[0][-1].set_xlabel("layer (input -> output)")
  for ax in axes[0]:
    ax.set_ylabel("cosine with FD of\nthe spiking loss")
  handles, labels = max((ax.get_legend_handles_labels() for ax in axes[0]),
                        key=lambda h: len(h[0]))
  fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
  fig.suptitle("Depth experiment on Fashion-MNIST: cosine between each layer's gradient and\n"
               "finite differences (FD) of the true spiking loss, 95% CI over directions",
               fontsize=9)
  fig.tight_layout(rect=(0, 0.6 / (2.9 * len(depths) + 0.9), 1, 1))
  fig.savefig(path, dpi=130)
  plt.close(fig)


def probe_markdown(probes: list[dict[str, Any]], command: str, hw: dict[str, str]) -> str:
  """docs/probe.md: one table per probed run."""
  lines = ["# Gradient probe of the depth experiment (Fashion-MNIST)", "",
           "Per layer (input to output), the cosine between the surrogate directional "
           "derivatives g.d and central finite differences of the true spiking loss "
           "(`snnjax.gradient_probe.gradient_probe`), over random unit directions d in that "
           "layer's kernel, eps = 0.05 x ||W||, one training batch, train mode; 95% bootstrap interval in "
           "brackets. For the SML runs, column `head_3` is the same cosine for the gradient "
           "of the surrogate module's own loss (n/a for layers after the head, which it does "
           "not depend on) and column `sml` for the full SML training loss. Layers of the "
           "heads themselves are left out. With few directions the intervals are wide; "
           "read the pattern over layers, not single values.", "",
           "Made by (see docs/depth.md for the training budget):", "", "```", command, "```", "",
           f"Hardware: {hw.get('lscpu Model name', '?')}, {hw['nproc']} cores, "
           f"JAX {hw['jax']} ({hw['jax_backend']}).", ""]
  for p in sorted(probes, key=lambda p: (p["depth"], p["variant"])):
    refs = list(p["layers"][0]["references"]) if p["layers"] else []
    lines += [f"## {VARIANT_LABELS[p['variant']]}, L = {p['depth']} "
              f"(run `{p['variant']}_L{p['depth']}`, step {p['step']}, {p['directions']} "
              f"directions, probe took {p['wall_s']:.0f} s)", "",
              "| # | layer | cosine (surrogate) |" + "".join(f" cosine ({r}) |" for r in refs),
              "|---:|---|---|" + "---|" * len(refs)]
    for i, l in enumerate(p["layers"], 1):
      cells = [str(i), l["layer"], _interval(l["cosine"], l["cosine_ci"])]
      cells += [_interval(l["references"][r]["cosine"], l["references"][r]["ci"]) for r in refs]
      lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def _interval(value: float, ci: list[float]) -> str:
  if not math.isfinite(value):
    return "n/a"
  return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def observations(args: argparse.Namespace, by: dict) -> list[str]:
  """Facts read off the table: each variant's best depth, and SML minus SNN per depth."""
  lines = []
  for v in args.variants:
    accs = {d: by[(v, d)]["test_accuracy"] for d in args.depths
            if (v, d) in by and by[(v, d)]["test_accuracy"] is not None}
    if accs:
      best = max(accs, key=accs.get)
      lines.append(f"- {VARIANT_LABELS[v]}: best at L = {best} ({_fmt(accs[best])}); at L = "
                   f"{args.depths[-1]}: {_fmt(accs.get(args.depths[-1]))}; change from L = "
                   f"{args.depths[0]} to L = {args.depths[-1]}: "
                   + (f"{100 * (accs[args.depths[-1]] - accs[args.depths[0]]):+.2f} points"
                      if args.depths[0] in accs and args.depths[-1] in accs else "n/a") + ".")
  if "snn" in args.variants and "sml" in args.variants:
    gaps = []
    for d in args.depths:
      a, b = by.get(("sml", d), {}), by.get(("snn", d), {})
      if a.get("test_accuracy") is not None and b.get("test_accuracy") is not None:
        gaps.append(f"L={d}: {100 * (a['test_accuracy'] - b['test_accuracy']):+.2f}")
    lines.append("- SNN + SML minus SNN (points): " + ", ".join(gaps) + ".")
  return lines


def kept_interpretation(path: pathlib.Path) -> str:
  """The hand-written "## Interpretation" section of an existing depth.md, or ""."""
  if not path.exists():
    return ""
  text = path.read_text()
  marker = "\n## Interpretation\n"
  if marker not in text:
    return ""
  body = text.split(marker, 1)[1].split("\n## ", 1)[0].strip()
  return "" if body.startswith("(hand-written") else body


def depth_markdown(args: argparse.Namespace, rows: list[dict[str, Any]], command: str,
                   hw: dict[str, str], total_s: float, interpretation: str = "") -> str:
  """docs/depth.md: the accuracy and wall-time tables, the budget, command and hardware."""
  by = {(r["variant"], r["depth"]): r for r in rows}
  head = "| L |" + "".join(f" {VARIANT_LABELS[v]} |" for v in args.variants)
  rule = "|---:|" + "---:|" * len(args.variants)
  acc = [head, rule] + [
      f"| {d} |" + "".join(f" {_fmt(by.get((v, d), {}).get('test_accuracy'))} |"
                           for v in args.variants) for d in args.depths]
  wall = [head, rule] + [
      f"| {d} |" + "".join(f" {by[(v, d)]['wall_s']:.0f} |" if (v, d) in by else " - |"
                           for v in args.variants) for d in args.depths]
  epochs = args.steps * args.batch_size / TRAIN_EXAMPLES
  one = rows[0]["command"] if rows else ""
  return "\n".join([
      "# Depth experiment on Fashion-MNIST (SML paper, Fig. 2)", "",
      "![accuracy vs depth](depth.png)", "",
      "`depth_net` (snnjax/models/vgg.py): stem 3C64s1-3C64s2-3C128s2, then L x 3C128s1, "
      "adaptive avg-pool 2x2, FC; LIF neurons, T = 4, atan surrogate (alpha = 2). Variants: "
      "**ANN** (ReLU, same graph), **SNN** (no surrogate module), **SNN + SML** (one surrogate "
      "module after block 3, k = 64, lambda = 0.9, alpha = 0.5; configs/fmnist_depth.py).", "",
      "## Budget", "",
      f"Every run has the same budget: {args.steps} steps of batch {args.batch_size} "
      f"(= {epochs:.2f} epochs of the 60,000 training images), AdamW lr 3e-3, cosine to 0 over "
      f"those steps, weight decay 0.02, width multiplier {args.width} (the stem has "
      f"{max(1, round(64 * args.width))}/{max(1, round(128 * args.width))} channels instead of "
      f"64/128), seed {args.seed}, one run per cell. This is **far below the paper's** "
      "budget (full width, hundreds of epochs on CIFAR): it was chosen so that the whole "
      f"experiment fits in ~40 minutes on a shared 2-core CPU. One seed per cell: seed-to-seed "
      "spread was not measured, so differences of a point or two may be noise. The ANN also "
      "runs T = 4 identical steps (same graph), so its wall time is not an ANN's cost.", "",
      "## Test accuracy (%, full 10,000-image test set, after the last step)", "",
      *acc, "",
      "## Wall time per run (s; includes start-up, compilation and the final evaluation)", "",
      "The machine was shared with other jobs (load average 4-10 on 2 cores), so these "
      "times are noisy and not a speed benchmark.", "",
      *wall, "",
      f"Sum over the runs: {total_s / 60:.1f} min of training (plus the probes, see "
      "probe.md); runs are sequential, one at a time.", "",
      "## What it shows", "",
      *observations(args, by), "",
      "## Interpretation", "",
      interpretation or "(hand-written; kept when depth.md is regenerated)", "",
      "## Gradient probe", "",
      "See [probe.md](probe.md) and ![probe](probe.png)", "",
      "## Reproduce", "",
      "```", command, "```", "",
      "Each run is `train.py` with, for example,", "", "```", one, "```", "",
      "## Hardware", "",
      *[f"- {k}: {v}" for k, v in hw.items()], "",
      f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", ""])


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--depths", default="1,2,4,8", help="comma-separated L values")
  parser.add_argument("--variants", default="ann,snn,sml", help="subset of ann,snn,sml")
  parser.add_argument("--steps", type=int, default=300, help="training steps of every run")
  parser.add_argument("--width", type=float, default=0.125)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--probe-directions", type=int, default=16,
                      help="random directions per layer; 0 = no probe")
  parser.add_argument("--probe-depths", default="",
                      help="comma-separated L values to probe; default the shallowest and deepest")
  parser.add_argument("--workdir-root", type=pathlib.Path, default=pathlib.Path("/tmp/depth"))
  parser.add_argument("--out-dir", type=pathlib.Path, default=REPO / "docs")
  args = parser.parse_args(argv)
  args.depths = sorted(int(d) for d in args.depths.split(","))
  args.variants = [v.strip() for v in args.variants.split(",")]
  for v in args.variants:
    if v not in VARIANT_FLAGS:
      parser.error(f"unknown variant {v!r}; choose from {', '.join(VARIANT_FLAGS)}")
  args.workdir_root = args.workdir_root.resolve()
  args.out_dir.mkdir(parents=True, exist_ok=True)
  command = "python " + shlex.join(["scripts/depth_experiment.py"] + sys.argv[1:])
  start = time.time()

  rows = [run_one(args, v, d) for d in args.depths for v in args.variants]
  hw = hardware()
  probes = []
  if args.probe_directions > 0:
    probe_depths = (sorted(int(d) for d in args.probe_depths.split(",")) if args.probe_depths
                    else sorted({args.depths[0], args.depths[-1]}))
    for d in probe_depths:
      for v in ("snn", "sml"):
        if v in args.variants:
          p = probe_one(args, v, d)
          if p is not None:
            probes.append(p)
  total = time.time() - start

  results = {"command": command, "hardware": hw, "steps": args.steps, "width": args.width,
             "batch_size": args.batch_size, "seed": args.seed, "depths": args.depths,
             "variants": args.variants, "runs": rows, "probes": probes,
             "train_wall_s": round(sum(r["wall_s"] for r in rows), 1),
             "probe_wall_s": round(sum(p["wall_s"] for p in probes), 1)}
  (args.out_dir / "depth_results.json").write_text(json.dumps(results, indent=1) + "\n")
  subtitle = (f"{args.steps} steps x batch {args.batch_size}, width {args.width}, T=4 "
              "(small budget)")
  plot_depth(rows, args.variants, args.depths, args.out_dir / "depth.png", subtitle)
  train_s = sum(r["wall_s"] for r in rows)
  md = args.out_dir / "depth.md"
  md.write_text(depth_markdown(args, rows, command, hw, train_s, kept_interpretation(md)))
  if probes:
    plot_probes(probes, args.out_dir / "probe.png")
    (args.out_dir / "probe.md").write_text(probe_markdown(probes, command, hw))
  print(f"wrote {args.out_dir}/depth.md, depth.png, depth_results.json"
        + (", probe.md, probe.png" if probes else "") + f" in {total / 60:.1f} min")
  return 0 if all(r["test_accuracy"] is not None for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
