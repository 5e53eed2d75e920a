"""Test accuracy of snnjax's default Fashion-MNIST config and of its SpikingJelly twin.

Both train the same network with the same recipe for the same number of steps:

  snnjax        ``train.py --config configs/fmnist_vgg_sml.py`` (the real training
                program), in its own process; the final test accuracy is the last
                eval record of WORKDIR/metrics.jsonl.
  spikingjelly  ``peers/spikingjelly_fmnist.py``: the identical network (VGG-small,
                ISNM, width 1/8, T=4, LIF tau=2 hard reset, atan(2), BN over T*B,
                Flax's initialisation), SML head and loss, AdamW with warmup +
                cosine stepped per update, batch, flip augmentation, per-epoch
                shuffling, in PyTorch + SpikingJelly 2.0 multi-step layers.

First a short child resolves the config (``spikingjelly_fmnist.py --describe``,
JAX): the recipe the twin trains from, and snnjax's parameter counts from
``jax.eval_shape`` over the model's init. The twin's counts (SNN alone, and
with the SML heads) must equal snnjax's, or the run fails.

Reported per framework: test accuracy of the head-less SNN on the eval split
(eval mode, BN running statistics, time-mean logits) after the last step,
epochs and steps, wall time of the whole process (start-up, JIT compilation,
evaluations and snnjax's checkpoints included), training images/s (median over
the log windows of ``log_every_steps`` steps after the first, timed alike in
both), parameter counts, the device and versions.

    python benchmarks/accuracy.py                         # the config's epochs, CPU
    python benchmarks/accuracy.py --epochs 0.1            # a short run, same steps each
    python benchmarks/accuracy.py --device gpu --epochs 10
    python benchmarks/accuracy.py --smoke                 # 4 steps each, 256 test images

Writes ``--out`` (JSON) and ``--md`` (Markdown) and prints the table.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

import common

ROOT = common.HERE.parent
TWIN = common.PEERS / "spikingjelly_fmnist.py"
DEFAULT_CONFIG = ROOT / "configs" / "fmnist_vgg_sml.py"
DEFAULT_OUT = common.HERE / "results" / "accuracy.json"
SMOKE_OUT = common.HERE / "results" / "accuracy_smoke.json"
DEFAULT_WORKDIR_ROOT = common.HERE / "results" / "accuracy_runs"
FRAMEWORKS = ("snnjax", "spikingjelly")
#: --smoke: a few steps each, evaluated on the first 256 test images.
SMOKE_STEPS, SMOKE_EVAL_SPLIT = 4, "test[:256]"
NOTES = {
    "snnjax": "train.py with the config (jax.jit, XLA)",
    "spikingjelly": "peers/spikingjelly_fmnist.py: eager PyTorch, SpikingJelly LIFNode + layers",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--config", default=str(DEFAULT_CONFIG), help="snnjax config file")
  p.add_argument("--epochs", type=float, default=None,
                 help="training epochs, may be fractional (default: the config's num_epochs)")
  p.add_argument("--max-steps", type=int, default=0,
                 help="stop after this many steps (the schedule still spans --epochs; 0 = off)")
  p.add_argument("--eval-split", default=None, help="eval split, e.g. 'test[:1000]' "
                                                    "(default: the config's, the full test set)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="further config override for both frameworks, e.g. seed=1 (repeatable)")
  p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma list from %(default)s")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                 help="cpu: JAX_PLATFORMS=cpu and torch on CPU; gpu: JAX's default backend "
                      "(must be a GPU) and torch CUDA")
  p.add_argument("--threads", type=int, default=0,
                 help="PyTorch threads (0: one per visible core, what XLA's CPU client uses)")
  p.add_argument("--python", default=sys.executable, help="interpreter of the children")
  p.add_argument("--out", default=None,
                 help=f"JSON result (default: {DEFAULT_OUT}; --smoke: {SMOKE_OUT.name})")
  p.add_argument("--md", default=None, help="Markdown report (default: --out with .md)")
  p.add_argument("--workdir-root", default=None,
                 help=f"folder for each run's workdirs and logs (default: {DEFAULT_WORKDIR_ROOT}"
                      "; --smoke: a temporary folder)")
  p.add_argument("--parallel", type=int, default=1,
                 help="frameworks at once (1 for timings; the smoke run uses 2)")
  p.add_argument("--timeout", type=float, default=86400.0, help="seconds per child")
  p.add_argument("--smoke", action="store_true",
                 help=f"tiny: {SMOKE_STEPS} steps each, eval on {SMOKE_EVAL_SPLIT}, in parallel")
  args = p.parse_args(argv)
  if args.smoke:
    args.max_steps = args.max_steps or SMOKE_STEPS
    args.eval_split = args.eval_split or SMOKE_EVAL_SPLIT
    args.parallel = max(args.parallel, 2)
  args.out = str(args.out or (SMOKE_OUT if args.smoke else DEFAULT_OUT))
  args.config = str(pathlib.Path(args.config).resolve())
  args.md = args.md or str(args.out).removesuffix(".json") + ".md"
  args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
  unknown = set(args.frameworks) - set(FRAMEWORKS)
  if unknown or not args.frameworks:
    p.error(f"unknown frameworks {sorted(unknown)}; choose from {FRAMEWORKS}")
  return args


def overrides(args: argparse.Namespace) -> list[str]:
  """Config overrides "key=value" that both frameworks get (train.py as --config.key=value)."""
  out = ["progress_bar=False"]
  if args.epochs is not None:
    out.append(f"num_epochs={args.epochs}")
  if args.max_steps:
    out.append(f"max_steps={args.max_steps}")
  if args.eval_split:
    out.append(f"data.eval_split={args.eval_split}")
  return out + list(args.set)


def child_env(args: argparse.Namespace) -> dict[str, str]:
  """Environment of the JAX children: CPU only for --device cpu."""
  return {"JAX_PLATFORMS": "cpu"} if args.device == "cpu" else {}


def describe(args: argparse.Namespace, workdir: pathlib.Path) -> dict[str, Any]:
  """snnjax's resolved recipe and parameter counts (a JAX child); exits on failure."""
  out = workdir / "recipe.json"
  command = [args.python, str(TWIN), "--describe", "--config", args.config, "--out", str(out)]
  command += [a for item in overrides(args) for a in ("--set", item)]
  run = common.run_command(command, workdir / "describe.log", child_env(args), args.timeout)
  if "error" in run:
    sys.exit(f"resolving the config failed ({run['error']}):\n{run['log_tail']}")
  recipe = json.loads(out.read_text())
  if args.device == "gpu" and recipe["backend"] != "gpu":
    sys.exit(f"--device gpu, but JAX's default backend is {recipe['backend']!r}")
  return recipe


def snnjax_record(recipe: dict[str, Any], workdir: pathlib.Path, run: dict) -> dict[str, Any]:
  """The snnjax row from train.py's WORKDIR/metrics.jsonl and the recipe's facts."""
  path = workdir / "metrics.jsonl"
  metrics = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] \
      if path.exists() else []
  evals = [m for m in metrics if m["kind"] == "eval"]
  windows = [m for m in metrics if m["kind"] == "train"]
  record = {"framework": "snnjax", "ok": "error" not in run and bool(evals), **run}
  if not record["ok"]:
    record.setdefault("error", "no eval record in metrics.jsonl")
    return record
  steps = evals[-1]["step"]
  record.update(
      test_accuracy=evals[-1]["test_accuracy"], test_loss=evals[-1]["test_loss"], steps=steps,
      epochs=steps / recipe["steps_per_epoch"],
      train_log=[{k: w.get(k) for k in ("step", "loss", "accuracy", "learning_rate",
                                        "images_per_s")} for w in windows],
      evals=[{k: e.get(k) for k in ("step", "epoch", "test_accuracy", "test_loss")}
             for e in evals],
      device_name=(recipe["device_kind"] if recipe["backend"] != "cpu"
                   else recipe["hardware"]["cpu"]),
      backend=recipe["backend"], versions=recipe["versions"], hardware=recipe["hardware"],
      **{k: recipe[k] for k in ("n_params", "n_params_with_heads", "n_decayed",
                                "n_decayed_with_heads")})
  return record


def steady_images_per_s(train_log: list[dict]) -> float | None:
  """Median images/s over the training windows after the first (which holds JIT compilation
  and warm-up); over all windows when there is only one."""
  rates = [w["images_per_s"] for w in train_log]
  return statistics.median(rates[1:] or rates) if rates else None


def run_framework(framework: str, args: argparse.Namespace, recipe: dict[str, Any],
                  workdir: pathlib.Path) -> dict[str, Any]:
  """Trains one framework in its own process; returns its record."""
  print(f"[{framework}] training ...", file=sys.stderr, flush=True)
  if framework == "snnjax":
    run_dir = workdir / "snnjax"
    command = [args.python, str(ROOT / "train.py"), "--config", args.config,
               "--workdir", str(run_dir)]
    command += [f"--config.{item}" for item in overrides(args)]
    run = common.run_command(command, workdir / "snnjax.log", child_env(args), args.timeout)
    record = snnjax_record(recipe, run_dir, run)
  else:
    out = workdir / "spikingjelly.json"
    command = [args.python, str(TWIN), "--recipe", str(workdir / "recipe.json"),
               "--device", args.device, "--threads", str(args.threads), "--out", str(out)]
    run = common.run_command(command, workdir / "spikingjelly.log", {}, args.timeout)
    record = json.loads(out.read_text()) if out.exists() else {"framework": framework,
                                                                "ok": False}
    record.update(run)
    record["ok"] = bool(record.get("ok")) and "error" not in run
    if not record["ok"]:
      record.setdefault("error", "no record")
  if record["ok"]:
    record["train_images_per_s"] = steady_images_per_s(record["train_log"])
  status = (f"test accuracy {record['test_accuracy']:.4f} after {record['steps']} steps"
            if record["ok"] else f"FAILED: {record['error']}")
  print(f"[{framework}] {status} ({record['wall_s']:.0f} s)", file=sys.stderr, flush=True)
  return record


def check_parameter_counts(recipe: dict[str, Any], records: list[dict]) -> str | None:
  """None if every successful row has snnjax's parameter counts, else the mismatch."""
  keys = ("n_params", "n_params_with_heads", "n_decayed", "n_decayed_with_heads")
  bad = {r["framework"]: {k: r.get(k) for k in keys} for r in records
         if r.get("ok") and any(r.get(k) != recipe[k] for k in keys)}
  if bad:
    return f"parameter counts differ from snnjax's {({k: recipe[k] for k in keys})}: {bad}"
  return None


def recipe_summary(recipe: dict[str, Any]) -> str:
  """One line: the network and the recipe both frameworks train."""
  c, m, d = recipe["config"], recipe["model"], recipe["data"]
  mc, o, s = c["model"], c["optimizer"], c["sml"]
  sur = m["surrogate"]
  heads = (f"SML heads after blocks {tuple(s['heads'])} (k={s['head_channels']}, "
           f"alpha={s['alpha']}, lam={s['lam']}, T_dis={s['temperature']})"
           if s["enabled"] else "no SML heads")
  aug = ", ".join(x for x in ((f"crop pad {d['crop_padding']}" if d["crop_padding"] else ""),
                              "flip" if d["flip"] else "") if x) or "none"
  return (f"{mc['name']} ({m['form']}), width {mc['width']}, T={mc['T']}, {mc['neuron']} "
          f"tau={mc['tau']} {mc['reset']} reset, {sur['name']}"
          f"({', '.join(f'{k}={v}' for k, v in sur['params'].items())}); {heads}; "
          f"{o['name']} lr {o['learning_rate']}, weight decay {o['weight_decay']}, "
          f"{recipe['warmup_steps']} warmup steps then {o['schedule']} over "
          f"{recipe['total_steps']} steps; batch {c['batch_size']} "
          f"({recipe['steps_per_epoch']} steps per epoch); augmentation: {aug}; "
          f"eval on {c['data']['eval_split']} ({d['num_eval']} images).")


def device_cell(record: dict[str, Any]) -> str:
  if record.get("backend") == "cpu":
    hw = record.get("hardware", {})
    return f"{record.get('device_name')} ({hw.get('cores')} cores)"
  return str(record.get("device_name"))


def report(args: argparse.Namespace, recipe: dict[str, Any], records: list[dict],
           result: dict[str, Any]) -> str:
  header = ["framework", "test accuracy %", "epochs", "steps", "wall s",
            "train images/s", "params (SNN)", "params (+heads)", "device"]
  rows = []
  for r in records:
    if not r.get("ok"):
      rows.append([r["framework"], f"failed: {r.get('error', '?')[:120]}"]
                  + ["-"] * (len(header) - 2))
      continue
    rows.append([r["framework"], 100 * r["test_accuracy"], f"{r['epochs']:.3g}", r["steps"],
                 r["wall_s"], r["train_images_per_s"], f"{r['n_params']:,}",
                 f"{r['n_params_with_heads']:,}", device_cell(r)])
  config = os.path.relpath(args.config, ROOT)
  lines = [f"### Fashion-MNIST test accuracy: {config}, {args.device}", "",
           common.markdown_table(header, rows), "",
           "Both: " + recipe_summary(recipe), ""]
  curves = [r for r in records if r.get("ok") and len(r["evals"]) > 1]
  if curves:
    lines += ["Test accuracy % by epoch: " + "; ".join(
        f"{r['framework']} " + ", ".join(f"{e['epoch']:.2g}: {100 * e['test_accuracy']:.2f}"
                                         for e in r["evals"]) for r in curves) + ".", ""]
  lines += ["Wall s: the whole training process (start-up, JIT compilation, evaluations, "
            "snnjax's checkpoints). Train images/s: median over the training windows after "
            f"the first (windows end every {recipe['config']['log_every_steps']} steps and at "
            "each evaluation; the first holds JAX's compilation), all windows if only one.", "",
            common.environment_markdown(result["environment"]), "",
            "Rows: " + "; ".join(f"{k}: {v}" for k, v in NOTES.items()
                                 if any(r["framework"] == k for r in records)) + "."]
  if result.get("parameter_check"):
    lines += ["", f"**Parameter check failed:** {result['parameter_check']}"]
  return "\n".join(lines)


def run(args: argparse.Namespace, workdir: pathlib.Path) -> int:
  recipe = describe(args, workdir)
  with concurrent.futures.ThreadPoolExecutor(max(1, min(args.parallel, len(args.frameworks)))) \
      as pool:
    records = list(pool.map(lambda f: run_framework(f, args, recipe, workdir), args.frameworks))
  result = {"benchmark": "accuracy", "args": vars(args), "workdir": str(workdir),
            "recipe": recipe, "records": records,
            "parameter_check": check_parameter_counts(recipe, records),
            "environment": common.environment(records)}
  common.write_outputs(result, report(args, recipe, records, result), args.out, args.md)
  if result["parameter_check"]:
    print(result["parameter_check"], file=sys.stderr)
    return 1
  return 0 if all(r.get("ok") for r in records) else 1


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  if args.workdir_root is None and args.smoke:
    with tempfile.TemporaryDirectory(prefix="snnjax-accuracy-") as tmp:
      return run(args, pathlib.Path(tmp))
  root = pathlib.Path(args.workdir_root or DEFAULT_WORKDIR_ROOT)
  workdir = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
  workdir.mkdir(parents=True, exist_ok=False)
  print(f"workdir: {workdir}", file=sys.stderr)
  return run(args, workdir)


if __name__ == "__main__":
  sys.exit(main())
