"""Run metrics: JSON lines, TensorBoard event files, and a terminal progress bar.

Every record is one JSON object per line in WORKDIR/metrics.jsonl, e.g.
``{"kind": "train", "step": 100, "epoch": 0.21, "loss": 0.61, ..., "images_per_s": 812.5}``
or ``{"kind": "eval", "step": 469, "test_accuracy": 0.861, ...}``; the same
scalars go to TensorBoard under ``<kind>/<name>``. Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import jax
import numpy as np


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


def first_non_finite(losses: list[float], first_step: int) -> int | None:
  """The step number of the first NaN/inf loss, or None."""
  for offset, loss in enumerate(losses):
    if not math.isfinite(loss):
      return first_step + offset
  return None


class MetricWriter:
  """Appends records to metrics.jsonl and TensorBoard (process 0 only)."""

  def __init__(self, workdir: pathlib.Path, enabled: bool = True):
    self.enabled = enabled
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self._tensorboard = None
    if enabled:
      from tensorboardX import SummaryWriter
      self._tensorboard = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

  def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"kind": kind, "step": int(step), **to_python(values)}
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    for name, value in record.items():
      if isinstance(value, (int, float)) and name not in ("step",):
        self._tensorboard.add_scalar(f"{kind}/{name}", value, int(step))

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()


def read_metrics(workdir: pathlib.Path | str) -> list[dict[str, Any]]:
  """All records of WORKDIR/metrics.jsonl, in order."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
