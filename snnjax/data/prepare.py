"""Converts an event dataset's original files into the folder snnjax trains from, once.

    python -m snnjax.data.prepare cifar10dvs     --raw CIFAR10DVS/     --out ~/data/cifar10dvs_events
    python -m snnjax.data.prepare dvs128_gesture --raw DvsGesture/     --out ~/data/dvs128_gesture_events
    python -m snnjax.data.prepare nmnist         --raw NMNIST/         --out ~/data/nmnist_events

Raw layouts, as the datasets are distributed (after unzipping):

    cifar10dvs      RAW/<class>/*.aedat                (10 class folders, AEDAT 2.0)
    dvs128_gesture  RAW/user*_*.aedat, RAW/user*_*_labels.csv,
                    RAW/trials_to_train.txt, RAW/trials_to_test.txt (AEDAT 3.1)
    nmnist          RAW/Train/<digit>/*.bin, RAW/Test/<digit>/*.bin

Output: the packed layout of :mod:`snnjax.data.events` (one folder of
memory-mapped arrays per split: ``OUT/all/`` for CIFAR10-DVS, which the
pipeline splits 90/10 per class, ``OUT/{train,test}/`` for the others), which
:func:`snnjax.data.events.open_event_source` reads. Each raw file is first
decoded (:mod:`snnjax.data.raw_events`, equal to SpikingJelly 2.0's) into one
``.npz`` of t, x, y, p per sample, SpikingJelly's events_np layout, in
``OUT/samples/``; these are packed per split and then deleted, unless
``--keep-samples`` keeps them (a folder SpikingJelly and snnjax both read).
DVS128 Gesture's class folders are named ``00`` .. ``10`` so that their sorted
order is the label; each labelled interval of a recording is one sample,
``<recording>_<k>`` (k counts earlier intervals of that class).

Safe to interrupt and rerun: samples are written into ``OUT.partial/samples/``
(each file written to a temporary name, then renamed), finished ones are
skipped, and only a complete conversion is packed and renamed to ``OUT`` with
a ``prepared.json`` manifest, so a training run never sees a half-converted
folder. A file that cannot be parsed is named and skipped without stopping the
rest; then the conversion stays in ``OUT.partial`` (exit status 1) unless
``--allow-failures`` finishes it without them (listed in the manifest). Uses
every core (``--workers``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import glob
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
from tqdm import tqdm

from snnjax.data import events as events_lib, raw_events

MANIFEST = "prepared.json"
PARTIAL_SUFFIX = ".partial"
SAMPLES = "samples"


@dataclasses.dataclass(frozen=True)
class Job:
  """One raw file and the samples it becomes (relative output paths)."""

  raw: str
  outputs: tuple[str, ...]


# --- Finding the raw files ----------------------------------------------------------------


def _require(path: str, what: str, fix: str) -> None:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: {what} not found; {fix}")


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def cifar10dvs_jobs(raw: str) -> list[Job]:
  """RAW/<class>/*.aedat -> <class>/<stem>.npz."""
  classes = sorted(d for d in os.listdir(raw) if os.path.isdir(os.path.join(raw, d)))
  jobs = [Job(f, (os.path.join(c, _stem(f) + ".npz"),))
          for c in classes for f in sorted(glob.glob(os.path.join(raw, c, "*.aedat")))]
  if not jobs:
    raise FileNotFoundError(f"{raw}: no <class>/*.aedat files; --raw must be the folder holding "
                            "CIFAR10-DVS's 10 class folders (airplane, automobile, ...).")
  return jobs


def dvs128_gesture_jobs(raw: str) -> list[Job]:
  """Each trial of trials_to_{train,test}.txt -> {train,test}/<label:02d>/<stem>_<k>.npz."""
  jobs = []
  for split in ("train", "test"):
    trials_file = os.path.join(raw, f"trials_to_{split}.txt")
    _require(trials_file, f"trials_to_{split}.txt",
             "--raw must be the extracted DvsGesture folder (user*_*.aedat, *_labels.csv, "
             "trials_to_train.txt, trials_to_test.txt).")
    for trial in raw_events.read_gesture_trials(trials_file):
      recording = os.path.join(raw, trial)
      labels_file = raw_events.gesture_labels_path(recording)
      _require(recording, "recording", f"it is listed in {trials_file}.")
      _require(labels_file, "labels csv", "each recording needs its labels csv next to it.")
      pairs = raw_events.gesture_sample_keys(raw_events.read_gesture_labels(labels_file))
      jobs.append(Job(recording, tuple(os.path.join(split, f"{label:02d}",
                                                    f"{_stem(recording)}_{k}.npz")
                                       for label, k in pairs)))
  return jobs


def nmnist_jobs(raw: str) -> list[Job]:
  """RAW/{Train,Test}/<digit>/*.bin -> {train,test}/<digit>/<stem>.npz."""
  jobs = []
  for folder, split in (("Train", "train"), ("Test", "test")):
    root = os.path.join(raw, folder)
    _require(root, f"{folder}/ folder", "--raw must hold N-MNIST's Train/ and Test/ folders.")
    for digit in sorted(os.listdir(root)):
      for f in sorted(glob.glob(os.path.join(root, digit, "*.bin"))):
        jobs.append(Job(f, (os.path.join(split, digit, _stem(f) + ".npz"),)))
  if not jobs:
    raise FileNotFoundError(f"{raw}: no Train/<digit>/*.bin files.")
  return jobs


# --- Converting one raw file ----------------------------------------------------------------


def cifar10dvs_samples(raw: str) -> list[dict[str, np.ndarray]]:
  return [raw_events.read_cifar10dvs_aedat(raw)]


def dvs128_gesture_samples(raw: str) -> list[dict[str, np.ndarray]]:
  events = raw_events.read_gesture_aedat(raw)
  labels = raw_events.read_gesture_labels(raw_events.gesture_labels_path(raw))
  return [sample for _, _, sample in raw_events.split_gesture_recording(events, labels)]


def nmnist_samples(raw: str) -> list[dict[str, np.ndarray]]:
  return [raw_events.read_nmnist_bin(raw)]


DATASETS: dict[str, tuple[Callable[[str], list[Job]],
                          Callable[[str], list[dict[str, np.ndarray]]]]] = {
    "cifar10dvs": (cifar10dvs_jobs, cifar10dvs_samples),
    "dvs128_gesture": (dvs128_gesture_jobs, dvs128_gesture_samples),
    "nmnist": (nmnist_jobs, nmnist_samples),
}


def compact(events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The same values in small dtypes: x, y uint16, p uint8, t as decoded (9-12 bytes/event)."""
  return {"t": events["t"], "x": events["x"].astype(np.uint16),
          "y": events["y"].astype(np.uint16), "p": events["p"].astype(np.uint8)}


def _save_atomically(path: str, events: dict[str, np.ndarray]) -> None:
  """An uncompressed .npz written under a temporary name, then renamed into place."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  temporary = f"{path}.tmp{os.getpid()}.npz"
  np.savez(temporary, **compact(events))
  os.replace(temporary, path)


def convert(dataset: str, job: Job, out: str) -> tuple[str, str | None]:
  """Writes the samples of ``job`` under ``out``; returns (raw file, error or None)."""
  try:
    samples = DATASETS[dataset][1](job.raw)
    if len(samples) != len(job.outputs):
      raise ValueError(f"{job.raw}: {len(samples)} samples, expected {len(job.outputs)}")
    for events, relative in zip(samples, job.outputs):
      if max(int(events["x"].max(initial=0)), int(events["y"].max(initial=0))) > 65535:
        raise ValueError(f"{job.raw}: coordinates beyond 65535")
      _save_atomically(os.path.join(out, relative), events)
  except (ValueError, OSError) as e:
    return job.raw, str(e).splitlines()[0][:300]
  return job.raw, None


def pending(jobs: list[Job], out: str) -> list[Job]:
  """Jobs with at least one output not yet written."""
  return [j for j in jobs if not all(os.path.exists(os.path.join(out, o)) for o in j.outputs)]


# --- The command ----------------------------------------------------------------------------


def _check_out(out: str, dataset: str) -> bool:
  """True if ``out`` already holds a finished conversion of ``dataset``; errors otherwise."""
  manifest = os.path.join(out, MANIFEST)
  if os.path.isfile(manifest):
    with open(manifest) as f:
      found = json.load(f).get("dataset")
    if found != dataset:
      raise ValueError(f"--out {out} holds a prepared {found!r} dataset, not {dataset!r}; "
                       "choose another --out.")
    return True
  if os.path.exists(out) and os.listdir(out):
    raise ValueError(f"--out {out} exists and is not a folder this command prepared "
                     f"(no {MANIFEST}); choose an empty or new --out.")
  return False


def _run(jobs: list[Job], dataset: str, partial: str, workers: int) -> Iterator[tuple[str, str]]:
  """Converts ``jobs`` on ``workers`` processes with a progress bar; yields (file, error)."""
  # spawn, not fork: importing snnjax starts JAX's threads, which a fork cannot copy safely.
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
    futures = [pool.submit(convert, dataset, job, partial) for job in jobs]
    with tqdm(total=len(futures), unit="file", desc=f"prepare {dataset}") as bar:
      for future in concurrent.futures.as_completed(futures):
        raw, error = future.result()
        bar.update(1)
        if error is not None:
          bar.write(f"skipped {raw}: {error}")
          yield raw, error


def fixed_class_names(dataset: str) -> tuple[str, ...]:
  """Class folders every split has even without samples: DVS128 Gesture's 00 .. 10."""
  if dataset == "dvs128_gesture":
    return tuple(f"{k:02d}" for k in range(raw_events.GESTURE_NUM_CLASSES))
  return ()


def packs(dataset: str) -> tuple[str, ...]:
  """The packed splits of ``dataset``: CIFAR10-DVS has no official split."""
  return (events_lib.ALL_PACK,) if dataset == "cifar10dvs" else ("train", "test")


def pack(dataset: str, jobs: list[Job], partial: str) -> dict[str, int]:
  """Packs the converted samples of ``jobs`` in ``partial/samples`` per split; returns counts."""
  samples = os.path.join(partial, SAMPLES)
  expected = {os.path.join(samples, o) for j in jobs for o in j.outputs}
  counts = {}
  for split in packs(dataset):
    root = samples if split == events_lib.ALL_PACK else os.path.join(samples, split)
    for name in fixed_class_names(dataset):  # every class, even one a split lacks
      os.makedirs(os.path.join(root, name), exist_ok=True)
    class_names, files, labels = events_lib.list_samples(root)
    kept = [(f, label) for f, label in zip(files, labels) if f in expected]
    print(f"packing {len(kept)} samples into {split}/", flush=True)
    events_lib.write_pack(os.path.join(partial, split), root, [f for f, _ in kept],
                          [label for _, label in kept], class_names)
    counts[split] = len(kept)
  return counts


def _remove_samples(out: str, manifest: dict) -> None:
  if not manifest.get("samples_kept", True):
    shutil.rmtree(os.path.join(out, SAMPLES), ignore_errors=True)


def prepare(dataset: str, raw: str, out: str, workers: int | None = None,
            allow_failures: bool = False, keep_samples: bool = False) -> dict:
  """Converts ``raw`` into ``out``; returns the manifest. See the module docstring.

  With failures, ``out`` is written only if ``allow_failures`` (the manifest
  lists the files left out); else ``OUT.partial`` stays for a rerun.
  """
  if dataset not in DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}.")
  raw, out = os.path.abspath(os.path.expanduser(raw)), os.path.abspath(os.path.expanduser(out))
  if not os.path.isdir(raw):
    raise FileNotFoundError(f"--raw {raw} is not a folder; give the folder of the dataset's "
                            "original files.")
  if _check_out(out, dataset):
    with open(os.path.join(out, MANIFEST)) as f:
      manifest = json.load(f)
    _remove_samples(out, manifest)  # an interrupted clean-up
    print(f"{out} already holds {manifest['samples']} prepared {dataset} samples; nothing to do.")
    return manifest
  jobs = DATASETS[dataset][0](raw)
  partial = out + PARTIAL_SUFFIX
  samples = os.path.join(partial, SAMPLES)
  todo = pending(jobs, samples)
  print(f"prepare {dataset}: {len(jobs)} raw files in {raw}; {len(jobs) - len(todo)} done "
        f"earlier; writing {partial}", flush=True)
  started = time.perf_counter()
  failures = list(_run(todo, dataset, samples, workers or os.cpu_count() or 1))
  seconds = time.perf_counter() - started
  manifest = {"dataset": dataset, "raw": raw, "files": len(jobs),
              "samples": sum(len(j.outputs) for j in jobs), "failed": [f for f, _ in failures],
              "seconds": round(seconds, 2), "layout": "packed", "samples_kept": keep_samples}
  if failures and not allow_failures:
    print(f"{len(failures)} of {len(jobs)} raw files could not be converted (named above). "
          f"Repair or remove them and rerun (finished files in {partial} are skipped), or "
          "rerun with --allow-failures to finish without them.", file=sys.stderr)
    return manifest
  started_pack = time.perf_counter()
  manifest["splits"] = pack(dataset, jobs, partial)
  manifest["samples"] = sum(manifest["splits"].values())
  manifest["pack_seconds"] = round(time.perf_counter() - started_pack, 2)
  with open(os.path.join(partial, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=2)
  os.replace(partial, out)
  _remove_samples(out, manifest)
  print(f"prepared {manifest['samples']} samples from {len(todo)} files in {seconds:.1f} s "
        f"({len(todo) / max(seconds, 1e-9):.0f} files/s), packed in "
        f"{manifest['pack_seconds']:.1f} s -> {out}")
  return manifest


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m snnjax.data.prepare",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("dataset", help=", ".join(DATASETS))
  parser.add_argument("--raw", required=True, help="folder of the original files")
  parser.add_argument("--out", required=True, help="folder to write (config.data.folder)")
  parser.add_argument("--workers", type=int, default=None,
                      help="processes (default: every core)")
  parser.add_argument("--keep-samples", action="store_true",
                      help=f"keep OUT/{SAMPLES}/, one .npz per sample (SpikingJelly's events_np)")
  parser.add_argument("--allow-failures", action="store_true",
                      help="finish without the raw files that cannot be parsed (listed in "
                           f"OUT/{MANIFEST})")
  args = parser.parse_args(argv)
  try:
    manifest = prepare(args.dataset, args.raw, args.out, args.workers, args.allow_failures,
                       args.keep_samples)
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 1 if manifest["failed"] and not args.allow_failures else 0


if __name__ == "__main__":
  sys.exit(main())
