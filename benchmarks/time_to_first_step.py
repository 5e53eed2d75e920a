"""Time from launching train.py to its first finished training step, cold and warm cache.

Starts ``python train.py --config CONFIG`` in a fresh workdir with
``--config.log_every_steps=1``, and times the moment the first training step's
record appears in WORKDIR/metrics.jsonl (written after that step's update has
finished), from the moment the process was started. ``cold``: an empty
compilation-cache folder; ``warm``: the same folder again, so JAX reads the
compiled programs back (snnjax.compilation_cache). Each case is a new process
and a new workdir; the run is stopped (SIGTERM, then waited for) once the record
appears. Run on a quiet machine; the load average is recorded.

    .venv/bin/python benchmarks/time_to_first_step.py                  # default config
    .venv/bin/python benchmarks/time_to_first_step.py --repeats 3 --out docs/results/time_to_first_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def first_step_seconds(config: str, workdir: pathlib.Path, cache: pathlib.Path,
                       timeout_s: float = 600.0) -> dict[str, float]:
  """Seconds from Popen to the first "train" record of WORKDIR/metrics.jsonl, and the phases.

  Also returns the compile time train.py reports ("compiled train step in X s").
  """
  env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache)}
  log = workdir.with_suffix(".log")
  metrics = workdir / "metrics.jsonl"
  start = time.perf_counter()
  with open(log, "w") as out:
    proc = subprocess.Popen(
        [sys.executable, "train.py", f"--config={config}", f"--workdir={workdir}",
         "--config.log_every_steps=1", "--config.progress_bar=False"],
        cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
      while time.perf_counter() - start < timeout_s:
        if metrics.exists() and '"kind": "train"' in metrics.read_text():
          elapsed = time.perf_counter() - start
          break
        if proc.poll() is not None:
          raise RuntimeError(f"train.py exited with {proc.returncode} before a step; see {log}")
        time.sleep(0.02)
      else:
        raise RuntimeError(f"no step after {timeout_s} s; see {log}")
    finally:
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
  compile_s = None
  for line in log.read_text().splitlines():
    if line.startswith("compiled train step in "):
      compile_s = float(line.split(" in ")[1].rstrip(" s"))
  return {"first_step_s": round(elapsed, 2), "train_step_compile_s": compile_s}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/fmnist_vgg_sml.py")
  parser.add_argument("--repeats", type=int, default=1, help="cold + warm pairs")
  parser.add_argument("--out", type=pathlib.Path,
                      default=REPO / "benchmarks" / "results" / "time_to_first_step.json")
  args = parser.parse_args(argv)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for repeat in range(args.repeats):
      cache = pathlib.Path(tmp) / f"cache{repeat}"
      for case in ("cold", "warm"):
        load = os.getloadavg()[0]
        row = {"case": case, "repeat": repeat, "load_before": round(load, 2),
               **first_step_seconds(args.config, pathlib.Path(tmp) / f"{case}{repeat}", cache)}
        print(json.dumps(row), flush=True)
        rows.append(row)
  result = {"config": args.config, "nproc": os.cpu_count(), "rows": rows,
            "load_after": round(os.getloadavg()[0], 2)}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=1) + "\n")
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
