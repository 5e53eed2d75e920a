"""Where the time of one snnjax train step goes: a jax.profiler trace, summed per XLA operation.

Builds the same step as ``train_throughput.py`` (``peers/snnjax_step.py``),
traces ``--steps`` steps after compilation and warm-up, and prints the time of
the step's XLA operations grouped by the part of the step they come from
(convolutions, BatchNorm, neurons, optimiser; read from the HLO metadata), by
XLA operation kind (YNNPACK / oneDNN fusions, loop fusions, copies and
transposes, ...), and the slowest single operations. On the CPU, times are
summed over XLA's threads, so shares are of the summed time, and convolutions
under snnjax's CPU flag (Eigen, not YNNPACK) run as asynchronous pool tasks the
trace mostly misses: their share is understated there. On a GPU, times are
those of the kernels on the device.

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
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "peers"))

import harness  # noqa: E402
import jax  # noqa: E402
import snnjax_step  # noqa: E402

#: HLO op-name prefixes -> kind; an op's name is its HLO instruction name (e.g. "convolution.12").
KINDS = (("convolution", "convolution"), ("fusion", "fusion"), ("loop_fusion", "fusion"),
         ("input_fusion", "fusion"), ("copy", "copy / transpose"),
         ("transpose", "copy / transpose"), ("dot", "dot"), ("reduce", "reduce"),
         ("custom-call", "custom-call"), ("while", "while"), ("call", "call"))


def kind_of(name: str) -> str:
  """"convolution.12" -> "convolution"; fusions, copies and transposes grouped."""
  base = re.sub(r"(\.\d+)+$", "", name)
  for prefix, kind in KINDS:
    if base.startswith(prefix):
      return kind
  return base or "?"


#: Lines of a device plane that repeat its kernels (per op, module or step) rather than list them.
SUMMARY_LINES = ("XLA Ops", "XLA Modules", "Steps", "Framework Ops", "Framework Name Scope",
                 "Source code", "XLA TraceMe")


def read_trace(trace_dir: str) -> jax.profiler.ProfileData:
  """The trace jax.profiler.trace wrote under trace_dir (its newest .xplane.pb)."""
  files = sorted(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
  if not files:
    raise RuntimeError(f"no .xplane.pb under {trace_dir}")
  return jax.profiler.ProfileData.from_file(str(files[-1]))


def op_events(data: jax.profiler.ProfileData) -> list[tuple[str, float]]:
  """(HLO instruction name, duration ms) of every XLA operation the trace recorded.

  An operation is an event that carries an "hlo_op" stat, the HLO instruction
  it executes. On CPU those events lie on the XLA thread-pool lines of the host
  plane. On a GPU only the device planes ("/device:GPU:0") are read: their
  events are the kernels, and the host's launch events are left out, so no
  operation is counted twice.
  """
  device_planes = [p for p in data.planes if p.name.startswith("/device:")]
  events = []
  for plane in device_planes or data.planes:
    for line in plane.lines:
      if line.name in SUMMARY_LINES:
        continue
      for e in line.events:
        with warnings.catch_warnings():   # JAX's event_stats type has no __module__ (0.11)
          warnings.simplefilter("ignore", DeprecationWarning)
          hlo_op = dict(e.stats).get("hlo_op")
        if hlo_op:
          events.append((str(hlo_op), e.duration_ns / 1e6))
  return events


def trace_lines(data: jax.profiler.ProfileData) -> dict[str, int]:
  """"plane | line" -> number of events: what a trace held, for checking op_events on new hardware."""
  return {f"{plane.name} | {line.name}": len(list(line.events))
          for plane in data.planes for line in plane.lines}


INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]*)\"")


def sources(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> the JAX op_name it came from (its metadata)."""
  return {m.group(1): m.group(2) for m in map(INSTRUCTION.match, hlo_text.splitlines()) if m}


def layer_of(op_name: str) -> str:
  """What part of the step an op belongs to, from its JAX op_name (a module path).

  "convolution" (forward or backward, any layer), "BatchNorm", "neuron" (LIF
  scan and surrogate: modules named sn* / *_sn), "other model ops",
  "optimizer / loss / metrics" (ops outside the model), or "no metadata" (ops
  XLA created itself, e.g. layout transposes fused with recomputation).
  """
  if not op_name:
    return "no metadata (XLA-made copies / transposes)"
  if op_name.endswith("conv_general_dilated"):
    return "convolution"
  parts = op_name.split("/")
  if not any(p.startswith(("jvp(", "transpose(jvp(")) for p in parts):
    return "optimizer / loss / metrics"
  if any(p.startswith("sn") or p.endswith("_sn") for p in parts):
    return "neuron"
  if any(p.startswith("bn") or p.endswith("_bn") for p in parts):
    return "BatchNorm"
  return "other model ops"


def summarise(events: list[tuple[str, float]], steps: int, top: int,
              hlo_text: str = "") -> dict:
  """Time per step (ms, summed over threads) and shares: per op kind, per layer kind, slowest ops."""
  total = sum(ms for _, ms in events) or 1.0
  origin = sources(hlo_text)
  by_kind: dict[str, float] = collections.Counter()
  by_layer: dict[str, float] = collections.Counter()
  by_op: dict[str, float] = collections.Counter()
  for name, ms in events:
    by_kind[kind_of(name)] += ms / steps
    by_layer[layer_of(origin.get(name, ""))] += ms / steps
    by_op[name] += ms / steps
  share = lambda counter: {k: {"ms": v, "share": v * steps / total}
                           for k, v in counter.most_common()}
  return {
      "op_ms_per_step": total / steps,
      "by_kind": share(by_kind),
      "by_layer": share(by_layer),
      "top_ops": [{"op": k, "ms": v, "share": v * steps / total, "source": origin.get(k)}
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
      start = time.perf_counter()
      for _ in range(args.steps):
        bench.step()
      wall_ms = (time.perf_counter() - start) * 1e3 / args.steps
    trace = read_trace(trace_dir)
    summary = summarise(op_events(trace), args.steps, args.top, bench.compiled.as_text())
    summary["trace_lines"] = trace_lines(trace)
    summary["device_kind"] = jax.devices()[0].device_kind
    summary["wall_ms_per_step"] = wall_ms
  print(f"{spec.framework}: {summary['op_ms_per_step']:.0f} ms of XLA operations per step "
        f"(summed over threads), step {wall_ms:.0f} ms wall (traced)")
  if jax.default_backend() == "cpu":
    print("note: on the CPU, XLA runs convolutions as asynchronous tasks in its Eigen pool; "
          "their time is mostly missing from the trace (time them alone with "
          "benchmarks/cpu_conv_paths.py)")
  for title, key in (("by part of the step (from HLO metadata)", "by_layer"),
                     ("by XLA operation kind", "by_kind")):
    print(title + ":")
    for kind, v in summary[key].items():
      print(f"  {kind:44s} {v['ms']:8.1f} ms  {100 * v['share']:5.1f} %")
  print("slowest operations:")
  for v in summary["top_ops"]:
    print(f"  {v['op']:28s} {v['ms']:8.1f} ms  {100 * v['share']:5.1f} %  {v['source'] or ''}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(summary, indent=1))
  return 0


if __name__ == "__main__":
  from snnjax import host_memory
  host_memory.reexec_with_huge_pages()   # the malloc train.py runs on
  sys.exit(main())
