"""Training throughput of one spiking ResNet-19 step in snnjax, SpikingJelly, snnTorch and Spyx.

The same step everywhere: ResNet-19 (docs/methods.md section 6) with a width
multiplier, 32x32x3 input repeated over T (direct encoding), LIF tau=2,
decay_input=False, v_reset=0, hard reset, atan(alpha=2) surrogate, BatchNorm
over the merged T*B axis, CE on the time-mean logits, AdamW (lr 1e-3, weight
decay 0.02 on conv / linear kernels only), a fixed random batch of B images.
Plus the limit: snnjax's own ResNet-19 as an ANN (spiking=False, ReLU) on T*B
images, the same convolution work without the neurons.

Every framework runs in its own process, back to back; compilation (JAX) and
``--warmup`` steps are excluded from the timed ``--steps``; images/s = B /
median step time (the ANN's T*B images count as B). Memory: the child's peak
RSS (ru_maxrss via wait4), its peak RSS over the timed steps only, XLA's
temp buffer size (JAX rows), the step's working set (peak RSS over the timed
steps minus RSS just before them, after returning freed heap to the OS) and the
device's peak (GPU). Parameter counts must agree across frameworks, or the run
fails.

    python benchmarks/train_throughput.py                      # CPU defaults: width 1/4, B=16, T=4
    python benchmarks/train_throughput.py --smoke              # seconds: snnjax + the limit, tiny
    python benchmarks/train_throughput.py --device gpu --width 1 --batch 64 \\
        --dtypes float32,bfloat16 --steps 30 --sj-cuda-impl cuda   # full model on a GPU

Writes ``--out`` (JSON) and ``--md`` (Markdown) and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import common

DEFAULT_OUT = common.HERE / "results" / "train_throughput.json"
NOTES = {
    "snnjax": "snnjax.train.steps.make_train_step (the real step, with its metrics)",
    "ann": "limit: snnjax ResNet-19, spiking=False (ReLU), T*B images",
    "spikingjelly": "SpikingJelly multi-step layers + LIFNode, eager PyTorch",
    "snntorch": "snn.Leaky looped over T, eager PyTorch; reset detached (snnTorch has no other)",
    "spyx": "Spyx 1.0: NNX layers on T*B, hard-reset LIF on Spyx's neuron contract via spyx.nn.run",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--frameworks", default=",".join(common.FRAMEWORKS),
                 help="comma list from %(default)s")
  p.add_argument("--dtypes", default="float32",
                 help="comma list: float32, bfloat16 (one row each; bf16 = snnjax/Spyx bf16 "
                      "activations with f32 parameters, PyTorch autocast)")
  p.add_argument("--T", type=int, default=4)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--width", type=float, default=0.25, help="width multiplier (1 = full ResNet-19)")
  p.add_argument("--steps", type=int, default=10, help="timed steps")
  p.add_argument("--warmup", type=int, default=2, help="excluded steps (after compilation)")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--threads", type=int, default=0,
                 help="PyTorch threads (0: one per visible core, what XLA's CPU client uses)")
  p.add_argument("--sj-cuda-impl", default="auto", choices=("auto", "cuda", "triton", "torch", "cupy"),
                 help="SpikingJelly's CUDA neuron kernels (GPU only; 2.0's successor of CuPy)")
  p.add_argument("--spyx-neuron", default="hard", choices=("hard", "builtin"),
                 help="hard: the benchmark's LIF on Spyx's contract; builtin: spyx.nn.LIF "
                      "(soft reset, a different network)")
  p.add_argument("--spyx-python", default=None, help="Python of Spyx's virtual environment")
  p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON result")
  p.add_argument("--md", default=None, help="Markdown report (default: --out with .md)")
  p.add_argument("--parallel", type=int, default=1,
                 help="children at once (1 for measurements; the smoke run uses 2)")
  p.add_argument("--timeout", type=float, default=1200.0, help="seconds per child")
  p.add_argument("--smoke", action="store_true",
                 help="tiny and fast: snnjax + the limit, width 1/16, B=2, T=2, 1 step")
  args = p.parse_args(argv)
  if args.smoke:
    args.frameworks, args.width, args.batch, args.T = "snnjax,ann", 0.0625, 2, 2
    args.steps, args.warmup, args.parallel = 1, 1, max(args.parallel, 2)
  args.md = args.md or str(args.out).removesuffix(".json") + ".md"
  return args


def jobs(args: argparse.Namespace) -> list[common.Job]:
  frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
  unknown = set(frameworks) - set(common.FRAMEWORKS)
  if unknown:
    sys.exit(f"unknown frameworks {sorted(unknown)}; choose from {common.FRAMEWORKS}")
  spyx = common.spyx_python(args.spyx_python)
  out = []
  for dtype in args.dtypes.split(","):
    for framework in frameworks:
      spec = common.Spec(framework=framework, T=args.T, batch=args.batch, width=args.width,
                         dtype=dtype, steps=args.steps, warmup=args.warmup,
                         threads=args.threads or common.visible_cores(), device=args.device,
                         sj_cuda_impl=args.sj_cuda_impl, spyx_neuron=args.spyx_neuron)
      python = spyx if framework == "spyx" else sys.executable
      # Smoke runs only: initialisation compiles ~3x faster; the train step is unchanged.
      env = {"JAX_THREEFRY_PARTITIONABLE": "0"} if args.smoke else {}
      out.append(common.Job(spec, python, env, label=framework))
  return out


def check_parameter_counts(records: list[dict]) -> str | None:
  """None if every successful row has the same parameter count, else the mismatch."""
  counts = {r["label"]: r["n_params"] for r in records if r.get("ok")}
  if len(set(counts.values())) > 1:
    return f"parameter counts differ across frameworks: {counts}"
  return None


def ratios(records: list[dict]) -> dict[str, dict[str, float]]:
  """Per dtype: snnjax images/s over each peer's, and snnjax's step time over the limit's."""
  out: dict[str, dict[str, float]] = {}
  for dtype in sorted({r["spec"]["dtype"] for r in records}):
    rows = {r["spec"]["framework"]: r for r in records
            if r.get("ok") and r["spec"]["dtype"] == dtype}
    if "snnjax" not in rows:
      continue
    ours = rows["snnjax"]
    out[dtype] = {f"snnjax/{name} images/s": ours["images_per_s"] / r["images_per_s"]
                  for name, r in rows.items() if name not in ("snnjax", "ann")}
    if "ann" in rows:
      out[dtype]["snnjax/limit step time"] = ours["step_s_median"] / rows["ann"]["step_s_median"]
      out[dtype]["snnjax/limit images/s"] = ours["images_per_s"] / rows["ann"]["images_per_s"]
  return out


def report(args: argparse.Namespace, records: list[dict], result: dict[str, Any]) -> str:
  header = ["framework", "dtype", "params", "compile s", "step ms (median)", "step ms (min)",
            "images/s", "snnjax / this", "peak RSS MiB", "RSS during steps MiB",
            "step working set MiB", "XLA temp MiB", "device peak MiB"]
  rows = []
  for r in records:
    if not r.get("ok"):
      rows.append([r["label"], r["spec"]["dtype"], f"failed: {r.get('error', '?')[:120]}"]
                  + ["-"] * (len(header) - 3))
      continue
    ours = next((o for o in records if o.get("ok") and o["label"] == "snnjax"
                 and o["spec"]["dtype"] == r["spec"]["dtype"]), None)
    ratio = ours["images_per_s"] / r["images_per_s"] if ours else None
    rows.append([r["label"], r["spec"]["dtype"], f"{r['n_params']:,}", r.get("compile_s"),
                 r["step_s_median"] * 1e3, r["step_s_min"] * 1e3, r["images_per_s"], ratio,
                 r.get("wait4_maxrss_mb") or r.get("peak_rss_mb"), r.get("steady_rss_mb"),
                 common.working_set_mb(r), r.get("xla_temp_mb"), r.get("device_peak_mb")])
  spec = records[0]["spec"]
  lines = [f"### Training step, ResNet-19 width {args.width}, T={args.T}, B={args.batch}, "
           f"{args.device}",
           "",
           common.markdown_table(header, rows),
           "",
           "Ratios: " + "; ".join(f"{dtype}: " + ", ".join(f"{k} = {v:.2f}" for k, v in r.items())
                                  for dtype, r in result["ratios"].items()),
           "",
           f"{spec['steps']} timed steps after compilation and {spec['warmup']} warm-up steps; "
           "images/s = B / median step time (the limit's T*B ANN images count as B).",
           "",
           common.environment_markdown(result["environment"]),
           "",
           "Rows: " + "; ".join(f"{k}: {v}" for k, v in NOTES.items()
                                if any(r["spec"]["framework"] == k for r in records)) + "."]
  if result.get("parameter_check"):
    lines += ["", f"**Parameter check failed:** {result['parameter_check']}"]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  records = common.run_jobs(jobs(args), parallel=args.parallel, timeout=args.timeout)
  result = {"benchmark": "train_throughput", "args": vars(args), "records": records,
            "ratios": ratios(records), "parameter_check": check_parameter_counts(records),
            "environment": common.environment(records)}
  common.write_outputs(result, report(args, records, result), args.out, args.md)
  if result["parameter_check"]:
    print(result["parameter_check"], file=sys.stderr)
    return 1
  return 0 if all(r.get("ok") for r in records if r["label"] in ("snnjax", "ann")) else 1


if __name__ == "__main__":
  sys.exit(main())
