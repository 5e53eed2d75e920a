"""Reading one event sample: a .npz per sample (events_np, what prepare writes) against one
memory-mapped file per split, next to the framing that follows every read.

For each size in ``--events`` (events per sample; N-MNIST ~4k, CIFAR10-DVS ~200k, DVS128
Gesture intervals ~300k+), writes ``--samples`` samples both ways in a temporary folder
(compact dtypes as prepare writes them: t int64, x, y uint16, p uint8) and reports the median
ms per sample, one thread, from the page cache:

    npz       snnjax.data.events.load_event_file on the sample's .npz (checks included)
    split     slices of four .npy arrays of the whole split, np.load(mmap_mode="r"), plus
              an offsets array: the one-file-per-split layout
    framing   snnjax.data.events.integrate_events into T=10 frames on 128x128 (by count)

With ``--prepare_files N``: also writes N CIFAR10-DVS AEDAT 2.0 files of ``--prepare_events``
events (tests/test_raw_events.py's writer) in 10 class folders and times
``python -m snnjax.data.prepare cifar10dvs`` on them: files/s of the conversion (all
cores, worker start-up included) and of the packing.

    python benchmarks/event_reading.py
    python benchmarks/event_reading.py --prepare_files 400 --prepare_events 200000
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from snnjax.data import events  # noqa: E402
from snnjax.data import prepare  # noqa: E402
from snnjax.data.prepare import compact  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "event_reading.json"


def sample(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  return compact({"t": np.sort(rng.integers(0, 10**6, n)), "x": rng.integers(0, 128, n),
                  "y": rng.integers(0, 128, n), "p": rng.integers(0, 2, n)})


def _median_ms(fn, count: int) -> float:
  times = []
  for i in range(count):
    t = time.perf_counter()
    fn(i)
    times.append(time.perf_counter() - t)
  return 1e3 * statistics.median(times)


def measure(folder: pathlib.Path, n: int, count: int) -> dict[str, float]:
  rng = np.random.default_rng(n)
  samples = [sample(rng, n) for _ in range(count)]
  for i, s in enumerate(samples):
    np.savez(folder / f"{n}_{i}.npz", **s)
  offsets = np.cumsum([0] + [n] * count)
  for key in events.EVENT_ARRAYS:
    np.save(folder / f"{n}_{key}.npy", np.concatenate([s[key] for s in samples]))
  split = {k: np.load(folder / f"{n}_{k}.npy", mmap_mode="r") for k in events.EVENT_ARRAYS}

  def read_split(i):
    return {k: np.array(a[offsets[i]:offsets[i + 1]]) for k, a in split.items()}

  def frame(i):
    s = samples[i]
    events.integrate_events(s["t"], s["x"], s["y"], s["p"], num_frames=10, height=128,
                            width=128)

  return {"events": n, "bytes_per_sample": sum(a.nbytes for a in samples[0].values()),
          "npz_ms": _median_ms(lambda i: events.load_event_file(str(folder / f"{n}_{i}.npz")),
                               count),
          "split_ms": _median_ms(read_split, count), "framing_ms": _median_ms(frame, count)}


def prepare_speed(files: int, n: int) -> dict:
  sys.path.insert(0, str(REPO / "tests"))
  from test_raw_events import write_cifar10dvs
  with tempfile.TemporaryDirectory() as folder:
    raw = pathlib.Path(folder) / "raw"
    for i in range(files):
      (raw / f"class{i % 10}").mkdir(parents=True, exist_ok=True)
      write_cifar10dvs(raw / f"class{i % 10}" / f"{i}.aedat", n=n, seed=i)
    t = time.perf_counter()
    manifest = prepare.prepare("cifar10dvs", str(raw), str(pathlib.Path(folder) / "out"))
    total = time.perf_counter() - t
  return {"files": files, "events_per_file": n, "convert_s": manifest["seconds"],
          "pack_s": manifest["pack_seconds"], "total_s": total,
          "files_per_s": files / total, "cores": len(os.sched_getaffinity(0))}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--events", default="4000,50000,200000,400000")
  p.add_argument("--samples", type=int, default=40)
  p.add_argument("--prepare_files", type=int, default=0)
  p.add_argument("--prepare_events", type=int, default=200000)
  p.add_argument("--out", default=str(DEFAULT_OUT))
  args = p.parse_args(argv)
  load = os.getloadavg()
  with tempfile.TemporaryDirectory() as folder:
    rows = [measure(pathlib.Path(folder), int(n), args.samples) for n in args.events.split(",")]
  result = {"rows": rows, "loadavg_start": load}
  if args.prepare_files:
    result["prepare"] = prepare_speed(args.prepare_files, args.prepare_events)
  result["loadavg_end"] = os.getloadavg()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2))
  print(f"load average {load[0]:.2f} at the start\n")
  print("| events per sample | MB | npz ms | one file per split ms | framing T=10 ms |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['events']:,} | {r['bytes_per_sample'] / 1e6:.2f} | {r['npz_ms']:.2f} | "
          f"{r['split_ms']:.2f} | {r['framing_ms']:.2f} |")
  if "prepare" in result:
    r = result["prepare"]
    print(f"\nprepare cifar10dvs: {r['files']} files of {r['events_per_file']:,} events on "
          f"{r['cores']} cores: convert {r['convert_s']:.1f} s, pack {r['pack_s']:.1f} s, "
          f"{r['files_per_s']:.0f} files/s overall")


if __name__ == "__main__":
  main()
