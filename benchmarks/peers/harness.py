"""Measurement harness shared by every benchmark child process (standard library only).

Each framework's script (``snnjax_step.py``, ``spikingjelly_step.py``, ...)
builds one training step from a :class:`Spec` and hands it to :func:`main`,
which times it and writes one JSON record. The harness imports no framework, so
it also runs inside Spyx's separate virtual environment.

Protocol of a framework's ``build(spec) -> Bench``:

    bench.n_params        trainable parameters of the network (int)
    bench.compile()       ahead-of-time compilation; returns seconds, or None (eager frameworks)
    bench.step()          one full training step (forward, backward, AdamW update),
                          returning only when the work is done (device synchronised)
    bench.loss()          the last step's loss, a float (sanity check)
    bench.reset_peak()    resets the device's peak-memory counter (no-op on CPU)
    bench.info()          extra fields for the record (versions, device memory, XLA sizes)

Timing: compile (if any) is timed on its own; the first step and ``warmup - 1``
further steps are excluded; then ``steps`` steps are timed one by one. Memory:
``baseline_rss_mb`` right after the framework's imports; after warm-up, freed
heap is returned to the OS (malloc_trim) and ``rss_before_steps_mb`` read;
``steady_rss_mb`` is the peak resident set over the timed steps only (the
kernel's peak counter is reset through /proc/self/clear_refs first);
``peak_rss_mb`` the whole process's peak, compilation included (what the parent
also reads from ``wait4``'s ru_maxrss).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from typing import Any

MIB = 2 ** 20


@dataclasses.dataclass
class Spec:
  """One benchmark row: the network, the batch and how to measure it.

  Attributes:
    framework: "snnjax", "ann" (snnjax's ANN twin on T*B images), "spikingjelly",
      "snntorch" or "spyx".
    T, batch, width, num_classes, image_size: the network (ResNet-19, 3-channel input).
    dtype: "float32", or "bfloat16" (snnjax/Spyx: bf16 activations, f32
      parameters; PyTorch: autocast to bf16).
    steps, warmup: timed and excluded steps.
    threads: CPU threads the framework may use (PyTorch: torch.set_num_threads;
      XLA's CPU client sizes its pool from the visible cores).
    device: "cpu" or "gpu".
    remat: snnjax only, the model's remat option.
    gradient: snnjax only, ``config.gradient`` ("bptt" or "sltt").
    sj_cuda_impl: SpikingJelly's CUDA neuron implementation (auto | cuda | triton | torch | cupy = 0.0.0.0.14's CuPy backend).
    spyx_neuron: "hard" (a hard-reset LIF on Spyx's stateful-layer contract) or
      "builtin" (spyx.nn.LIF: soft reset, spike from the previous membrane).
    lr, weight_decay: AdamW settings (decay on conv / dense kernels only).
    seed: PRNG seed of weights and data.
  """

  framework: str
  T: int = 4
  batch: int = 16
  width: float = 0.25
  num_classes: int = 10
  image_size: int = 32
  dtype: str = "float32"
  steps: int = 10
  warmup: int = 2
  threads: int = 0
  device: str = "cpu"
  remat: str = "none"
  gradient: str = "bptt"
  sj_cuda_impl: str = "auto"
  spyx_neuron: str = "hard"
  lr: float = 1e-3
  weight_decay: float = 0.02
  seed: int = 0

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> "Spec":
    return cls(**json.loads(text))

  @property
  def images_per_step(self) -> int:
    """SNN images per step: B (each runs T steps). The ANN row's T*B images count as B."""
    return self.batch


def version(package: str) -> str:
  """``package``'s installed version, its ``__version__`` when it is only on the path, or "?"."""
  from importlib import metadata
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    try:
      return getattr(__import__(package), "__version__", "?")
    except ImportError:
      return "?"


def channels(base: int, width: float) -> int:
  """Channels after the width multiplier: max(1, round(base * width)), as snnjax's models."""
  return max(1, int(round(base * width)))


# ---------------------------------------------------------------------------
# Memory probes (Linux).


def _status_kib(field: str) -> int | None:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except OSError:
    return None
  return None


def rss_mb() -> float | None:
  """Current resident set size, MiB."""
  kib = _status_kib("VmRSS")
  return None if kib is None else kib / 1024


def hwm_mb() -> float | None:
  """Peak resident set size since start or the last :func:`reset_hwm`, MiB."""
  kib = _status_kib("VmHWM")
  return None if kib is None else kib / 1024


def trim_heap() -> bool:
  """Returns freed heap memory to the OS (glibc malloc_trim), so RSS shows what is live.

  Without it, memory that compilation (XLA) or warm-up freed but malloc kept
  would count as the training step's. False where glibc is not available.
  """
  try:
    import ctypes
    return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) or True)
  except (OSError, AttributeError):
    return False


def reset_hwm() -> bool:
  """Resets the kernel's peak-RSS counter of this process; False where not allowed."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def maxrss_mb() -> float:
  """ru_maxrss of this process (KiB on Linux), MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def steal_s() -> float | None:
  """CPU time the hypervisor gave to other guests since boot, all cores (Linux /proc/stat), s."""
  try:
    with open("/proc/stat") as f:
      return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return None


def per_step_usage(before: Any, after: Any, steal_before: float | None,
                   steal_after: float | None, steps: int) -> dict[str, float | None]:
  """Per timed step: minor page faults, user and kernel CPU seconds of this process, and
  the machine's steal time (another guest's use of these cores; None off Linux)."""
  stolen = None if steal_before is None or steal_after is None else steal_after - steal_before
  return {"minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
          "user_s_per_step": (after.ru_utime - before.ru_utime) / steps,
          "sys_s_per_step": (after.ru_stime - before.ru_stime) / steps,
          "steal_s_per_step": None if stolen is None else stolen / steps}


def hardware() -> dict[str, Any]:
  """CPU model, visible cores and memory of this machine."""
  cpu = platform.processor() or ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  except OSError:
    pass
  mem_gib = None
  try:
    with open("/proc/meminfo") as f:
      mem_gib = round(int(f.readline().split()[1]) / 2 ** 20, 1)
  except (OSError, ValueError, IndexError):
    pass
  return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "memory_gib": mem_gib,
          "python": platform.python_version(), "platform": platform.platform()}


# ---------------------------------------------------------------------------
# The measurement.


def measure(bench: Any, spec: Spec) -> dict[str, Any]:
  """Compiles, warms up and times ``bench``; returns the record's measured fields."""
  compile_s = bench.compile()
  t = time.perf_counter()
  bench.step()
  first_step_s = time.perf_counter() - t
  for _ in range(max(spec.warmup - 1, 0)):
    bench.step()
  trimmed = trim_heap()
  before_steps = rss_mb()
  hwm_reset = reset_hwm()
  bench.reset_peak()
  times = []
  usage, steal = resource.getrusage(resource.RUSAGE_SELF), steal_s()
  for _ in range(spec.steps):
    t = time.perf_counter()
    bench.step()
    times.append(time.perf_counter() - t)
  median = statistics.median(times)
  per_step = per_step_usage(usage, resource.getrusage(resource.RUSAGE_SELF), steal, steal_s(),
                            spec.steps)
  return {
      "n_params": int(bench.n_params),
      "compile_s": compile_s,
      "first_step_s": first_step_s,
      "step_s": times,
      "step_s_median": median,
      "step_s_min": min(times),
      "images_per_s": spec.images_per_step / median,
      "loss": float(bench.loss()),
      "steady_rss_mb": hwm_mb() if hwm_reset else None,
      "rss_before_steps_mb": before_steps,
      "heap_trimmed": trimmed,
      **per_step,
  }


def main(build) -> None:
  """Command line of a framework script: ``--spec JSON --out FILE``; writes one record.

  Call it after the framework's imports: ``baseline_rss_mb`` is read first.

  The record holds the spec, the measurement (see :func:`measure`) or the error
  that stopped it, memory figures and ``bench.info()``. Exit status 0 even on a
  framework error (the record says what failed), 2 on a harness error.
  """
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--spec", required=True, help="Spec as JSON")
  parser.add_argument("--out", required=True, help="where to write the JSON record")
  args = parser.parse_args()
  spec = Spec.from_json(args.spec)
  record: dict[str, Any] = {"spec": dataclasses.asdict(spec), "ok": False,
                            "baseline_rss_mb": rss_mb()}
  try:
    bench = build(spec)
    record.update(measure(bench, spec))
    record.update(bench.info())
    record["ok"] = True
  except Exception as e:  # the parent reports it; one peer failing must not stop the others
    record["error"] = f"{type(e).__name__}: {e}"
    record["traceback"] = traceback.format_exc()
  record["peak_rss_mb"] = maxrss_mb()
  record["hardware"] = hardware()
  with open(args.out, "w") as f:
    json.dump(record, f, indent=1)
  print(json.dumps({k: record.get(k) for k in ("ok", "images_per_s", "step_s_median", "error")}),
        file=sys.stderr)
