"""Run metrics: JSON lines, TensorBoard event files, and a terminal progress bar.

Every record is one JSON object per line in WORKDIR/metrics.jsonl, e.g.
``{"kind": "train", "step": 100, "epoch": 0.21, "loss": 0.61, ..., "images_per_s": 812.5}``
or ``{"kind": "eval", "step": 469, "test_accuracy": 0.861, ...}``; the same
scalars go to TensorBoard under ``<kind>/<name>``. Only process 0 writes.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pathlib
import sys
import time
from typing import Any

import jax
import numpy as np

from snnjax.train import failures

log = logging.getLogger("snnjax")


def tensorboardx(module: str) -> Any:
  """``tensorboardX.<module>``, imported without PyTorch when PyTorch is not loaded yet.

  tensorboardX imports PyTorch whenever it is installed (1.4 s here), only to
  accept torch tensors; snnjax writes Python floats. While tensorboardX is first
  imported, ``import torch`` is made to fail (tensorboardX then falls back to
  NumPy), and PyTorch stays importable afterwards.
  """
  if "torch" in sys.modules or "tensorboardX" in sys.modules:
    return importlib.import_module(f"tensorboardX.{module}")
  sys.modules["torch"] = None  # "import torch" raises ImportError while this entry is None
  try:
    return importlib.import_module(f"tensorboardX.{module}")
  finally:
    del sys.modules["torch"]


def to_python(value: Any) -> Any:
  """Arrays and NumPy scalars -> plain floats/ints/lists (JSON-able)."""
  if isinstance(value, dict):
    return {k: to_python(v) for k, v in value.items()}
  array = np.asarray(value)
  if array.ndim == 0:
    return array.item()
  return array.tolist()


def mean_of_steps(per_step: list[dict[str, Any]]) -> dict[str, float]:
  """Averages scalar metrics over logged steps (host side)."""
  fetched = jax.device_get(per_step)
  return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


class MetricWriter:
  """Appends records to metrics.jsonl and TensorBoard events, synchronously (process 0 only).

  Each :meth:`write` returns only once the record is in the operating system's
  hands, and raises :class:`snnjax.train.failures.WriteFailure` (disk full,
  permission denied, ...) right there, in the training loop's thread, so a
  failing disk stops the run instead of blocking it.

  ``resume_step`` makes the files exact after any interruption: records past it
  (written after the checkpoint the run resumes from) are dropped from
  metrics.jsonl, which is rewritten atomically, and TensorBoard is told to
  discard its events past it. ``None`` is a run from step 0: an existing
  metrics.jsonl is then moved aside to ``metrics.<time>.jsonl`` with a warning.
  """

  def __init__(self, workdir: pathlib.Path, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self._file = None
    self._events = None
    if not enabled:
      return
    with failures.reported_as_write_failure("metrics", self.path.parent, OSError):
      if resume_step is None:
        _move_aside_old_records(self.path)
      else:
        _drop_records_after(self.path, resume_step)
      self._file = self.path.open("a")
      self._events = _events_writer(pathlib.Path(workdir) / "tensorboard",
                                    purge_step=0 if resume_step is None else resume_step + 1)

  def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"kind": kind, "step": int(step), **to_python(values)}
    with failures.reported_as_write_failure("metrics", self.path, OSError):
      self._file.write(json.dumps(record) + "\n")
      self._file.flush()
    summary, event_pb2 = tensorboardx("summary"), tensorboardx("proto.event_pb2")
    summaries = [summary.scalar(f"{kind}/{name}", value)
                 for name, value in record.items()
                 if isinstance(value, (int, float)) and name != "step"]
    event = event_pb2.Event(wall_time=time.time(), step=int(step))
    for s in summaries:
      event.summary.value.extend(s.value)
    with failures.reported_as_write_failure("TensorBoard events",
                                            self.path.parent / "tensorboard", OSError):
      self._events.write_event(event)
      self._events.flush()

  def close(self) -> None:
    """Closes both files; errors on close (a disk that filled meanwhile) are ignored."""
    for f in (self._file, self._events):
      if f is not None:
        try:
          f.close()
        except OSError:
          pass
    self._file = self._events = None


def _events_writer(folder: pathlib.Path, purge_step: int):
  """A synchronous TensorBoard event file whose first event discards older events >= purge_step."""
  event_file_writer, event_pb2 = tensorboardx("event_file_writer"), tensorboardx("proto.event_pb2")
  folder.mkdir(parents=True, exist_ok=True)
  writer = event_file_writer.EventsWriter(  # a unique name: one file per run start
      str(folder / "events"), filename_suffix=f".{os.getpid()}.{time.time_ns()}")
  writer.write_event(event_pb2.Event(wall_time=time.time(), step=purge_step,
                                     session_log=event_pb2.SessionLog(
                                         status=event_pb2.SessionLog.START)))
  writer.flush()
  return writer


def _drop_records_after(path: pathlib.Path, step: int) -> int:
  """Rewrites ``path`` atomically without records past ``step`` (and any torn last line)."""
  if not path.is_file():  # none yet (or a device or pipe: nothing to rewrite)
    return 0
  lines = path.read_text().splitlines()
  kept = [line for line in lines if (logged := _step_of(line)) is not None and logged <= step]
  if len(kept) == len(lines):
    return 0
  temporary = path.with_name(path.name + ".tmp")
  with temporary.open("w") as f:
    f.write("".join(line + "\n" for line in kept))
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)
  log.info("metrics.jsonl: dropped %d records past step %d (written after that checkpoint)",
           len(lines) - len(kept), step)
  return len(lines) - len(kept)


def _move_aside_old_records(path: pathlib.Path) -> None:
  """Renames a non-empty metrics.jsonl to metrics.<time>.jsonl, with a warning."""
  records = path.read_text().splitlines() if path.is_file() else []
  if not any(r.strip() for r in records):
    return
  last = max((_step_of(r) or 0 for r in records), default=0)
  target = path.with_name(f"metrics.{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
  os.replace(path, target)
  log.warning("%s holds %d records up to step %d but there is no checkpoint to resume: "
              "training starts again from step 0. The old records are kept in %s.",
              path.parent, len(records), last, target.name)


def _step_of(line: str) -> int | None:
  """The step of one metrics.jsonl line, or None for a torn or garbled line."""
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None


def read_metrics(workdir: pathlib.Path | str) -> list[dict[str, Any]]:
  """All records of WORKDIR/metrics.jsonl, in order."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
