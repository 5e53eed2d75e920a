"""What the benchmark drivers share: running one row in its own process, tables, versions.

Standard library only (and snnjax.host_memory, which is too): the drivers
import no framework, so every framework
starts in a fresh process of its own (its memory is its own, and one peer
cannot slow or break another). Each child is a script in ``benchmarks/peers``
run as ``python SCRIPT --spec JSON --out FILE``; the parent reads the child's
JSON record and adds the child's ru_maxrss from ``os.wait4``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
PEERS = HERE / "peers"
sys.path.insert(0, str(PEERS))

import harness  # noqa: E402  (stdlib-only, shared with the children)
from snnjax import host_memory  # noqa: E402  (stdlib-only too)

Spec = harness.Spec

SCRIPTS = {
    "snnjax": "snnjax_step.py",
    "ann": "snnjax_step.py",
    "spikingjelly": "spikingjelly_step.py",
    "snntorch": "snntorch_step.py",
    "spyx": "spyx_step.py",
}
FRAMEWORKS = tuple(SCRIPTS)
#: Where Spyx's own virtual environment is looked for, in order (after --spyx-python / $SPYX_PYTHON).
SPYX_PYTHONS = (HERE / ".venv-spyx" / "bin" / "python", pathlib.Path("/tmp/spyx-venv/bin/python"))
#: snnjax.xla_flags.CPU_REMAT_XLA_FLAG (what train.py sets with model.remat), copied here
#: because the drivers import no framework; tests/test_remat.py checks the two agree.
CPU_REMAT_XLA_FLAGS = "--xla_disable_hlo_passes=cse_barrier_expander"


def spyx_python(explicit: str | None) -> str | None:
  """The Python of Spyx's environment: ``explicit``, $SPYX_PYTHON, or a default location."""
  for candidate in (explicit, os.environ.get("SPYX_PYTHON"), *SPYX_PYTHONS):
    if candidate and pathlib.Path(candidate).exists():
      return str(candidate)
  return None


def visible_cores() -> int:
  return len(os.sched_getaffinity(0))


@dataclasses.dataclass
class Job:
  """One child process: a spec, the interpreter to run it and extra environment."""

  spec: Spec
  python: str | None = sys.executable
  env: dict[str, str] = dataclasses.field(default_factory=dict)
  label: str = ""


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int, float | None, bool]:
  """Waits for ``proc`` with os.wait4; returns (status, ru_maxrss MiB, timed_out)."""
  deadline = time.monotonic() + timeout
  while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
      proc.returncode = os.waitstatus_to_exitcode(status)
      return proc.returncode, usage.ru_maxrss / 1024, False
    if time.monotonic() > deadline:
      proc.kill()
      _, status, usage = os.wait4(proc.pid, 0)
      proc.returncode = os.waitstatus_to_exitcode(status)
      return proc.returncode, usage.ru_maxrss / 1024, True
    time.sleep(0.1)


def run_command(command: list[str], log: pathlib.Path, env: dict[str, str],
                timeout: float) -> dict[str, Any]:
  """Runs ``command`` from the repository root, output to ``log``, with ``env`` over os.environ.

  Returns exit_code, wall_s, wait4_maxrss_mb and log, plus error and log_tail
  when it timed out or exited non-zero. ``env``'s XLA_FLAGS are appended to
  the caller's, not put in their place.
  """
  merged = {**os.environ, **env}
  if "XLA_FLAGS" in env and os.environ.get("XLA_FLAGS"):
    merged["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} {env['XLA_FLAGS']}"
  start = time.monotonic()
  with open(log, "w") as log_file:
    proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=merged,
                            cwd=str(HERE.parent))
    code, maxrss, timed_out = _wait(proc, timeout)
  result = {"exit_code": code, "wall_s": time.monotonic() - start, "wait4_maxrss_mb": maxrss,
            "log": str(log)}
  if timed_out:
    result["error"] = f"timed out after {timeout:.0f} s"
  elif code != 0:
    result["error"] = f"exit status {code}"
  if "error" in result:
    result["log_tail"] = log.read_text()[-3000:]
  return result


def host_malloc_env(environ: dict[str, str] = os.environ) -> dict[str, str]:
  """The $GLIBC_TUNABLES that train.py would restart itself with (snnjax.host_memory), or {}.

  Every child gets it, whatever its framework: all rows run on the same malloc,
  the one snnjax's users train with. ``SNNJAX_HUGE_PAGES=0`` turns it off for all.
  """
  if not host_memory.should_reexec(environ, host_memory.thp_mode(), host_memory.glibc_version()):
    return {}
  return {"GLIBC_TUNABLES": host_memory.with_tunable(environ)["GLIBC_TUNABLES"]}


def run_job(job: Job, timeout: float = 900.0, verbose: bool = True) -> dict[str, Any]:
  """Runs one row in a fresh process; returns its record (with ``ok`` and maybe ``error``).

  The child's environment is this process's, then :func:`host_malloc_env`, then ``job.env``.
  """
  spec = job.spec
  env = {**host_malloc_env(), **job.env}
  label = job.label or spec.framework
  base = {"spec": dataclasses.asdict(spec), "label": label, "ok": False}
  if job.python is None:
    return {**base, "error": "skipped: no Python environment for this framework "
                             "(see benchmarks/setup_peers.sh)"}
  with tempfile.TemporaryDirectory(prefix="snnjax-bench-") as tmp:
    out, log = pathlib.Path(tmp) / "record.json", pathlib.Path(tmp) / "log.txt"
    command = [job.python, str(PEERS / SCRIPTS[spec.framework]), "--spec", spec.to_json(),
               "--out", str(out)]
    if verbose:
      print(f"[{label}] T={spec.T} B={spec.batch} width={spec.width} {spec.dtype} ...",
            file=sys.stderr, flush=True)
    run = run_command(command, log, env, timeout)
    record = json.loads(out.read_text()) if out.exists() else dict(base)
    record.update(label=label, wall_s=run["wall_s"], exit_code=run["exit_code"],
                  wait4_maxrss_mb=run["wait4_maxrss_mb"], env=env)
    if "error" in run and (record.get("ok") or run["error"].startswith("timed out")):
      record.update(ok=False, error=run["error"])
    if not record.get("ok"):
      record.setdefault("error", f"exit status {run['exit_code']}, no record")
      record["log_tail"] = log.read_text()[-3000:]
    if verbose:
      status = (f"{record['images_per_s']:.2f} images/s, step {record['step_s_median'] * 1e3:.0f} ms"
                if record.get("ok") else f"FAILED: {record['error']}")
      print(f"[{label}] {status} ({run['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    return record


def run_jobs(jobs: Sequence[Job], parallel: int = 1, timeout: float = 900.0) -> list[dict]:
  """Runs the jobs back to back (``parallel=1``, for measurements) or concurrently (smoke runs)."""
  if parallel <= 1:
    return [run_job(job, timeout) for job in jobs]
  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    return list(pool.map(lambda job: run_job(job, timeout), jobs))


# ---------------------------------------------------------------------------
# Reporting.


def working_set_mb(record: dict) -> float | None:
  """Memory the training step adds: peak RSS over the timed steps minus RSS just before them.

  Activations, gradients and temporaries of the step (and, for JAX, the
  output buffers of the donated state); start-up, compiled code and the
  heap that compilation freed are excluded (the harness trims the heap first).
  """
  steady, before = record.get("steady_rss_mb"), record.get("rss_before_steps_mb")
  return None if steady is None or before is None else steady - before


def fmt(value: Any, digits: int = 1) -> str:
  """A table cell: numbers rounded, None as a dash."""
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:,.{digits}f}"
  return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |"
            for row in rows]
  return "\n".join(lines)


def environment(records: Sequence[dict]) -> dict[str, Any]:
  """Hardware and the versions every framework reported."""
  versions: dict[str, str] = {}
  for r in records:
    versions.update(r.get("versions") or {})
  hardware = next((r["hardware"] for r in records if r.get("hardware")), harness.hardware())
  threads = sorted({r.get("torch_threads") for r in records if r.get("torch_threads")})
  return {"hardware": hardware, "versions": dict(sorted(versions.items())),
          "torch_threads": threads, "visible_cores": visible_cores(),
          "xla_cpu_threads": "XLA's default CPU pool: one thread per visible core"}


def write_outputs(result: dict[str, Any], markdown: str, json_path: str | None,
                  md_path: str | None) -> None:
  """Writes the JSON result and the Markdown report (folders created) and prints the report."""
  for path, text in ((json_path, json.dumps(result, indent=1)), (md_path, markdown)):
    if path:
      pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
      pathlib.Path(path).write_text(text + "\n")
  print(markdown)


def environment_markdown(env: dict[str, Any]) -> str:
  hw = env["hardware"]
  versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
  return (f"Hardware: {hw.get('cpu')}, {env['visible_cores']} visible cores, "
          f"{hw.get('memory_gib')} GiB; Python {hw.get('python')}.\n"
          f"Threads: PyTorch {env['torch_threads'] or '-'} (torch.set_num_threads), "
          f"{env['xla_cpu_threads']}.\nVersions: {versions}.")
