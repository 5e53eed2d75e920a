"""Peak memory and step time against the number of time steps T, with and without rematerialisation.

Rows, for every T in ``--Ts`` (default 1, 2, 4, 8, 16), each in its own process:

    snnjax                 the real snnjax train step, model remat="none"
    snnjax remat=block     the same with remat="block" (each residual block checkpointed)
    snnjax remat=neuron    remat="neuron" (each neuron's scan over T checkpointed)
    snnjax sltt            config.gradient="sltt": one time step at a time, no gradient
                           through the membrane across steps (memory independent of T)
    spikingjelly           SpikingJelly, eager PyTorch

Same network and step as ``train_throughput.py`` (ResNet-19, LIF, atan, AdamW),
smaller defaults (width 1/4, B=8) so that T=16 fits the time budget on 2 cores.

On CPU, XLA's "cse_barrier_expander" pass strips jax.checkpoint's optimisation
barriers before common-subexpression elimination, which merges the recomputed
forward back into the original one and undoes remat. The remat rows therefore
run with XLA_FLAGS=--xla_disable_hlo_passes=cse_barrier_expander on CPU (the
``--no-remat-xla-flag`` switch shows the effect without it). "none" rows have
no barriers, so the flag would change nothing there.

Memory columns: peak RSS of the whole child (ru_maxrss: includes framework
start-up and compilation), peak RSS over the timed steps only (the runtime
plus the step), the step's working set (that peak minus the RSS just before
the timed steps, after freed heap went back to the OS: what the step itself
adds), XLA's temp buffer (activations and workspace of the compiled step, JAX
rows) and the device's peak (GPU). Growth ratios
T=16 / T=4 are reported for each (smallest / largest T when those did not run).

    python benchmarks/memory_vs_T.py                  # CPU defaults, about 8 minutes on 2 cores
    python benchmarks/memory_vs_T.py --smoke          # T in (1, 2), snnjax remat=block, tiny
    python benchmarks/memory_vs_T.py --device gpu --width 1 --batch 32
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import common

DEFAULT_OUT = common.HERE / "results" / "memory_vs_T.json"
VARIANTS = ("none", "block", "neuron", "sltt", "spikingjelly")
MEMORY_KEYS = {"peak RSS": "wait4_maxrss_mb", "RSS during steps": "steady_rss_mb",
               "step working set": "working_set_mb", "XLA temp": "xla_temp_mb",
               "device peak": "device_peak_mb"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--Ts", default="1,2,4,8,16", help="comma list of time steps")
  p.add_argument("--variants", default="none,block,sltt,spikingjelly",
                 help=f"comma list from {','.join(VARIANTS)} (none/block/neuron: snnjax's remat; "
                      "sltt: snnjax's SLTT gradient)")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--width", type=float, default=0.25)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--steps", type=int, default=3, help="timed steps")
  p.add_argument("--warmup", type=int, default=1, help="excluded steps (after compilation)")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: visible cores)")
  p.add_argument("--sj-cuda-impl", default="auto", choices=("auto", "cuda", "triton", "torch", "cupy"))
  p.add_argument("--no-remat-xla-flag", action="store_true",
                 help=f"run remat rows without XLA_FLAGS={common.CPU_REMAT_XLA_FLAGS} on CPU")
  p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON result")
  p.add_argument("--md", default=None, help="Markdown report (default: --out with .md)")
  p.add_argument("--parallel", type=int, default=1, help="children at once (smoke: 2)")
  p.add_argument("--timeout", type=float, default=1200.0, help="seconds per child")
  p.add_argument("--smoke", action="store_true",
                 help="tiny and fast: T in (1, 2), snnjax remat=block, width 1/16, B=2")
  args = p.parse_args(argv)
  if args.smoke:
    args.Ts, args.variants, args.width, args.batch = "1,2", "block", 0.0625, 2
    args.steps, args.warmup, args.parallel = 1, 1, max(args.parallel, 2)
  args.md = args.md or str(args.out).removesuffix(".json") + ".md"
  return args


def label(variant: str) -> str:
  return {"none": "snnjax", "spikingjelly": "spikingjelly",
          "sltt": "snnjax sltt"}.get(variant, f"snnjax remat={variant}")


def jobs(args: argparse.Namespace) -> list[common.Job]:
  variants = [v.strip() for v in args.variants.split(",") if v.strip()]
  unknown = set(variants) - set(VARIANTS)
  if unknown:
    sys.exit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
  out = []
  # Interleaved (every variant at one T, then the next T), so drifting machine load
  # does not fall on one variant.
  for T in (int(t) for t in args.Ts.split(",")):
    for variant in variants:
      framework = "spikingjelly" if variant == "spikingjelly" else "snnjax"
      spec = common.Spec(framework=framework, T=T, batch=args.batch, width=args.width,
                         dtype=args.dtype, steps=args.steps, warmup=args.warmup,
                         threads=args.threads or common.visible_cores(), device=args.device,
                         remat=variant if variant in ("block", "neuron") else "none",
                         gradient="sltt" if variant == "sltt" else "bptt",
                         sj_cuda_impl=args.sj_cuda_impl)
      env = {}
      if variant in ("block", "neuron") and args.device == "cpu" and not args.no_remat_xla_flag:
        env["XLA_FLAGS"] = common.CPU_REMAT_XLA_FLAGS
      if args.smoke:
        env["JAX_THREEFRY_PARTITIONABLE"] = "0"   # init compiles ~3x faster; the step is unchanged
      out.append(common.Job(spec, sys.executable, env, label=label(variant)))
  return out


def growth_span(records: list[dict]) -> tuple[int, int]:
  """The T pair growth is measured over: (4, 16) when both ran, else (smallest, largest)."""
  Ts = sorted({r["spec"]["T"] for r in records})
  return (4, 16) if {4, 16} <= set(Ts) else (Ts[0], Ts[-1])


def growth(records: list[dict]) -> dict[str, dict[str, float]]:
  """Per row label and memory measure: value at the high T over value at the low T."""
  low, high = growth_span(records)
  out: dict[str, dict[str, float]] = {}
  by = {(r["label"], r["spec"]["T"]): r for r in records if r.get("ok")}
  for name in sorted({r["label"] for r in records}):
    a, b = by.get((name, low)), by.get((name, high))
    if a and b:
      out[name] = {measure: b[key] / a[key] for measure, key in MEMORY_KEYS.items()
                   if a.get(key) and b.get(key)}
      out[name]["step time"] = b["step_s_median"] / a["step_s_median"]
  return out


def report(args: argparse.Namespace, records: list[dict], result: dict[str, Any]) -> str:
  header = ["row", "T", "step ms", "images/s", *(f"{m} MiB" for m in MEMORY_KEYS)]
  rows = []
  for r in sorted(records, key=lambda r: (r["label"] != "snnjax", r["label"], r["spec"]["T"])):
    if not r.get("ok"):
      rows.append([r["label"], r["spec"]["T"], f"failed: {r.get('error', '?')[:100]}"]
                  + ["-"] * (len(header) - 3))
      continue
    rows.append([r["label"], r["spec"]["T"], r["step_s_median"] * 1e3, r["images_per_s"],
                 *(r.get(key) for key in MEMORY_KEYS.values())])
  growth_rows = [[name, *(g.get(m) for m in (*MEMORY_KEYS, "step time"))]
                 for name, g in result["growth"].items()]
  spec = records[0]["spec"]
  flag = ("none" if args.no_remat_xla_flag or args.device != "cpu"
          else f"XLA_FLAGS={common.CPU_REMAT_XLA_FLAGS}")
  return "\n".join([
      f"### Memory and step time vs T, ResNet-19 width {args.width}, B={args.batch}, "
      f"{args.dtype}, {args.device}",
      "",
      common.markdown_table(header, rows),
      "",
      "Growth from T={0} to T={1} (value at {1} / value at {0}):".format(*growth_span(records)),
      "",
      common.markdown_table(["row", *MEMORY_KEYS, "step time"], growth_rows),
      "",
      f"{spec['steps']} timed steps after compilation and {spec['warmup']} warm-up steps; "
      f"remat rows' XLA flags on CPU: {flag}.",
      "",
      common.environment_markdown(result["environment"]),
  ])


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  records = common.run_jobs(jobs(args), parallel=args.parallel, timeout=args.timeout)
  for r in records:
    r["working_set_mb"] = common.working_set_mb(r)
  result = {"benchmark": "memory_vs_T", "args": vars(args), "records": records,
            "growth": growth(records), "environment": common.environment(records)}
  common.write_outputs(result, report(args, records, result), args.out, args.md)
  return 0 if all(r.get("ok") for r in records if r["spec"]["framework"] == "snnjax") else 1


if __name__ == "__main__":
  sys.exit(main())
