"""Where the time of one snnjax train step goes: a jax.profiler trace, summed per XLA operation.

Builds the same step as ``train_throughput.py`` (``peers/snnjax_step.py``),
traces ``--steps`` steps after compilation and warm-up, and prints the XLA
operations of the step grouped by kind (convolution, fusion, copy / transpose,
...) and the slowest single operations, with their share of the traced time.

    python benchmarks/profile_step.py                        # SNN, CPU defaults
    python benchmarks/profile_step.py --ann                  # the ANN limit
    python benchmarks/profile_step.py --json out.json --top 30
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import re
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers"))

import harness  # noqa: E402
import jax  # noqa: E402
import snnjax_step  # noqa: E402

#: HLO op-name prefixes -> kind; an op's name is its HLO instruction name (e.g. "convolution.12").
KINDS = (("convolution", "convolution"), ("fusion", "fusion"), ("loop_fusion", "fusion"),
         ("input_fusion", "fusion"), ("copy", "copy / transpose"),
         ("transpose", "copy / transpose"), ("dot", "dot"), ("reduce", "reduce"),
         ("custom-call", "custom-call"), ("while", "while"), ("call", "call"))


HLO_NAME = re.compile(r"^[a-z][a-z_\-]*(\.\d+)+$")


def kind_of(name: str) -> str:
  """"convolution.12" -> "convolution"; fusions, copies and transposes grouped."""
  base = re.sub(r"(\.\d+)+$", "", name)
  for prefix, kind in KINDS:
    if base.startswith(prefix):
      return kind
  return base or "?"


def op_events(trace_dir: str) -> list[tuple[str, float]]:
  """(HLO instruction name, duration ms) of every XLA operation the trace recorded.

  On CPU the operations are events named like "convolution.12" or
  "loop_fusion.3" on the XLA thread-pool lines; on GPU on the device planes.
  """
  files = sorted(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
  if not files:
    raise RuntimeError(f"no .xplane.pb under {trace_dir}")
  data = jax.profiler.ProfileData.from_file(str(files[-1]))
  events = []
  for plane in data.planes:
    for line in plane.lines:
      if line.name == "python":
        continue
      events += [(e.name, e.duration_ns / 1e6) for e in line.events if HLO_NAME.match(e.name)]
  return events


def summarise(events: list[tuple[str, float]], steps: int, top: int) -> dict:
  """Per-kind and per-operation time (ms per step, summed over threads) and shares."""
  total = sum(ms for _, ms in events) or 1.0
  by_kind: dict[str, float] = collections.Counter()
  by_op: dict[str, float] = collections.Counter()
  for name, ms in events:
    by_kind[kind_of(name)] += ms / steps
    by_op[name] += ms / steps
  return {
      "op_ms_per_step": total / steps,
      "by_kind": {k: {"ms": v, "share": v * steps / total} for k, v in by_kind.most_common()},
      "top_ops": [{"op": k, "ms": v, "share": v * steps / total}
                  for k, v in by_op.most_common(top)],
  }


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--T", type=int, default=4)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--width", type=float, default=0.25)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--remat", default="none")
  p.add_argument("--ann", action="store_true", help="profile the ANN limit instead")
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--top", type=int, default=15)
  p.add_argument("--json", default=None, help="write the summary here")
  args = p.parse_args(argv)
  spec = harness.Spec(framework="ann" if args.ann else "snnjax", T=args.T, batch=args.batch,
                      width=args.width, dtype=args.dtype, remat=args.remat)
  bench = snnjax_step.Bench(spec)
  bench.compile()
  for _ in range(2):
    bench.step()
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(args.steps):
        bench.step()
    summary = summarise(op_events(trace_dir), args.steps, args.top)
  print(f"{spec.framework}: {summary['op_ms_per_step']:.0f} ms of XLA operations per step "
        "(summed over threads)")
  for kind, v in summary["by_kind"].items():
    print(f"  {kind:20s} {v['ms']:8.1f} ms  {100 * v['share']:5.1f} %")
  print("slowest operations:")
  for v in summary["top_ops"]:
    print(f"  {v['op']:40s} {v['ms']:8.1f} ms  {100 * v['share']:5.1f} %")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
