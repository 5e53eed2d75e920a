"""The training step with glibc's malloc on 4 KiB pages and on transparent huge pages, A/B.

train.py restarts itself with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
(``snnjax.host_memory``) because XLA:CPU allocates each step's temporary buffer
afresh and glibc maps and unmaps it every time. This driver shows what that
changes: it runs the benchmark step of ``train_throughput.py`` (ResNet-19 width
1/4, T=4, B=16 by default) for snnjax and SpikingJelly, each with and without the
tunable, in interleaved rounds (one process at a time, a fresh one per row), and
reports per row the median step time over rounds, the minor page faults, user
and kernel CPU seconds per step, and the steal time (CPU the hypervisor gave
other guests), with the load average at the start and the end.

    python benchmarks/host_malloc.py                       # 3 rounds, ~8 min on 2 cores
    python benchmarks/host_malloc.py --rounds 1 --frameworks snnjax
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import common

DEFAULT_OUT = common.HERE / "results" / "host_malloc.json"
MODES = ("4 KiB pages", "huge pages")


def small_pages_env() -> dict[str, str]:
  """A child environment without glibc.malloc.hugetlb (and with train.py's restart off)."""
  kept = [t for t in common.host_memory.tunables(os.environ)
          if t.split("=")[0] != common.host_memory.TUNABLE]
  return {"GLIBC_TUNABLES": ":".join(kept), common.host_memory.OPT_OUT: "0"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--frameworks", default="snnjax,spikingjelly")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--T", type=int, default=4)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--width", type=float, default=0.25)
  p.add_argument("--steps", type=int, default=15, help="timed steps per row")
  p.add_argument("--out", default=str(DEFAULT_OUT))
  return p.parse_args(argv)


def jobs(args: argparse.Namespace, huge_pages_env: dict[str, str]) -> list[common.Job]:
  """One round: every framework in both modes."""
  out = []
  for framework in args.frameworks.split(","):
    spec = common.Spec(framework=framework, T=args.T, batch=args.batch, width=args.width,
                       steps=args.steps, warmup=2, threads=common.visible_cores())
    out += [common.Job(spec, env=small_pages_env(), label=f"{framework}, {MODES[0]}"),
            common.Job(spec, env=huge_pages_env, label=f"{framework}, {MODES[1]}")]
  return out


def summarise(records: list[dict]) -> list[dict]:
  """Per label: the median over rounds of each per-step figure."""
  rows = []
  for label in dict.fromkeys(r["label"] for r in records):
    mine = [r for r in records if r["label"] == label and r.get("ok")]
    median = lambda key: (statistics.median(r[key] for r in mine)
                          if mine and all(r.get(key) is not None for r in mine) else None)
    rows.append({"label": label, "rounds": len(mine), "step_ms": 1e3 * (median("step_s_median") or 0),
                 "step_ms_per_round": [1e3 * r["step_s_median"] for r in mine],
                 "minor_faults": median("minor_faults_per_step"),
                 "user_s": median("user_s_per_step"), "sys_s": median("sys_s_per_step"),
                 "steal_s": median("steal_s_per_step"), "loss": median("loss")})
  return rows


def report(rows: list[dict], loads: tuple[float, float], args: argparse.Namespace) -> str:
  header = ["row", "rounds", "step ms (median of rounds)", "per round", "minor faults / step",
            "user s / step", "kernel s / step", "steal s / step"]
  seconds = lambda s: "-" if s is None else f"{s:.3f}"
  table = [[r["label"], r["rounds"], r["step_ms"],
            ", ".join(f"{t:.0f}" for t in r["step_ms_per_round"]), r["minor_faults"],
            seconds(r["user_s"]), seconds(r["sys_s"]), seconds(r["steal_s"])] for r in rows]
  by_label = {r["label"]: r for r in rows}
  ratios = []
  for framework in args.frameworks.split(","):
    small, huge = (by_label.get(f"{framework}, {m}") for m in MODES)
    if small and huge and small["step_ms"] and huge["step_ms"]:
      ratios.append(f"{framework}: {small['step_ms'] / huge['step_ms']:.2f}x the images/s "
                    f"with huge pages")
  return "\n".join([
      f"### Host malloc: ResNet-19 width {args.width}, T={args.T}, B={args.batch}, "
      f"{args.steps} timed steps, {args.rounds} interleaved rounds",
      "", common.markdown_table(header, table), "", "; ".join(ratios) + ".",
      "", f"Load average (1 min) {loads[0]:.2f} at the start, {loads[1]:.2f} at the end. "
      "CPU seconds are this process's, summed over its threads; steal is the machine's."])


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  huge_pages_env = common.host_malloc_env({k: v for k, v in os.environ.items()
                                           if k != common.host_memory.OPT_OUT})
  if not huge_pages_env:
    print(f"error: this machine cannot give malloc huge pages (glibc "
          f"{common.host_memory.glibc_version()}, transparent huge pages "
          f"{common.host_memory.thp_mode() or 'unknown'!r}); nothing to compare", file=sys.stderr)
    return 2
  start_load = os.getloadavg()[0]
  records = []
  for _ in range(args.rounds):
    records += [common.run_job(job) for job in jobs(args, huge_pages_env)]
  rows = summarise(records)
  loads = (start_load, os.getloadavg()[0])
  result = {"benchmark": "host_malloc", "args": vars(args), "rows": rows, "records": records,
            "load_average": loads, "environment": common.environment(records)}
  common.write_outputs(result, report(rows, loads, args), args.out,
                       str(args.out).removesuffix(".json") + ".md")
  return 0 if all(r.get("ok") for r in records) else 1


if __name__ == "__main__":
  sys.exit(main())
