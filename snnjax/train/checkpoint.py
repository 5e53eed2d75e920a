"""Checkpoints of a training run: save, keep the last k and the best, resume.

A :class:`Checkpointer` is an orbax-checkpoint ``CheckpointManager`` over one folder (the
training loop passes ``WORKDIR/checkpoints``). Each step folder ``<folder>/<step>`` holds the
items ``state`` (the train state pytree, ``StandardSave``), ``data_state`` (the input-iterator
position, JSON) and orbax's ``metrics`` (the metrics given to :meth:`Checkpointer.save`).
Retention is orbax's ``LatestN(keep_last)`` and, with ``keep_best``, ``BestN(n=1)`` by
``best_metric``; orbax deletes old steps only once the newer checkpoint is committed.

What snnjax adds on top of orbax:

* ``checksums.json`` per step folder, written once the step is committed: the size and sha256
  of every other file. Orbax does not checksum array data (tensorstore's zarr codecs carry a
  crc32c on the shard index only), so a flipped bit would restore silently. A restore checks
  the manifest first; a step without one (saved before manifests existed, or killed between
  commit and manifest) restores unverified.
* Unreadable checkpoints (truncated, missing, garbled or changed files, no read permission):
  :meth:`Checkpointer.restore_latest` and :meth:`Checkpointer.restore_best` skip them with a
  warning naming the step and restore the previous (or next best) one. They are never deleted
  and do not count as one of the last ``keep_last``; should training come back to that step,
  the folder is renamed to ``<step>.unreadable`` before the new checkpoint is written.
* Errors that name the path, the step and the fix (permission denied, a model that does not
  match the checkpoint), and read-only opening without orbax's read-only notices.

    ckpt = Checkpointer(workdir / "checkpoints", keep_last=3)
    restored = ckpt.restore_latest(state)          # None on a fresh run
    if restored is not None:
      state, data_state, step = restored
    ckpt.save(step, state, data_state=it.get_state(), metrics={"test_accuracy": acc})
    ckpt.close()                                    # waits for async writes
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from snnjax.train import failures

logger = logging.getLogger(__name__)

PyTree = Any

_STATE = "state"
_DATA_STATE = "data_state"
_METRICS = ocp.checkpoint_manager.METRIC_ITEM_NAME  # orbax writes it when given a best_fn
_MANIFEST = "checksums.json"
_MANIFEST_TMP = ".checksums.json.tmp"
_MANIFEST_VERSION = 1
_MAX_LISTED = 5
_TS_FAILED_OPEN = re.compile(r'Failed to open: "([^"]+)"')  # in tensorstore's messages
_FRESH_RUN_HINT = "start a fresh run with a new --workdir"
#: What orbax logs (through absl, as warnings) whenever a folder is opened read-only, which is
#: how checkpoints are inspected and evaluated: expected, nothing to act on.
_READ_ONLY_NOTICES = ("read_only=True, setting save_interval_steps=0",
                      "Given directory is read only")


class UnreadableCheckpointError(OSError):
  """A checkpoint exists but cannot be read (truncated, missing, garbled or changed files)."""


class ChecksumMismatchError(ValueError):
  """A file of a step folder differs from the step's checksum manifest."""


class CheckpointMismatchError(ValueError):
  """A checkpoint's tree does not match the state it is restored into."""


class Checkpointer:
  """Saves and restores train states in one checkpoint folder.

  All processes of a multi-process JAX job must make the same calls; orbax
  writes shared files from the primary process only.

  Args:
    directory: the checkpoint folder (created unless ``read_only``).
    keep_last: how many of the most recent readable checkpoints to keep (>= 1).
    keep_best: also keep the checkpoint with the best ``best_metric``, however old it is.
    best_metric: key into the ``metrics`` given to :meth:`save`.
    best_mode: ``"max"`` or ``"min"``: whether larger or smaller is better.
    async_save: write checkpoints in the background; :meth:`save` returns once the arrays
      are copied off the devices. :meth:`wait_until_finished` and :meth:`close` make the
      writes durable.
    read_only: never write, rename or delete (for evaluation).
  """

  def __init__(self, directory: str | epath.PathLike, *, keep_last: int = 3,
               keep_best: bool = True, best_metric: str = "test_accuracy",
               best_mode: str = "max", async_save: bool = True, read_only: bool = False):
    _check_options(keep_last, best_metric, best_mode)
    self.directory = epath.Path(os.path.abspath(os.fspath(directory)))  # orbax needs absolute paths
    _check_not_a_file(self.directory)
    self.keep_last, self.keep_best = keep_last, keep_best
    self.best_metric, self.best_mode = best_metric, best_mode
    self.async_save, self.read_only = async_save, read_only
    self._unreadable: set[int] = set()
    self._unmanifested: set[int] = set()  # saved by this object, manifest not yet written
    self._metrics: dict[int, dict] = {}  # verified metrics of every step
    self._manager = self._open_manager()
    self._metrics.update({s: self._read_metrics(s) for s in self._manager.all_steps()})

  # Queries.

  def all_steps(self) -> list[int]:
    """Every committed step in the folder, including ones found unreadable."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest step not found unreadable so far, or None."""
    steps = self._readable_steps()
    return steps[-1] if steps else None

  def best_step(self) -> int | None:
    """The readable step with the best ``best_metric`` (latest on ties), or None."""
    ranked = self._ranked(self._readable_steps())
    return ranked[0] if ranked else None

  def metrics(self, step: int) -> dict:
    """The metrics saved with ``step`` ({} if none or unreadable)."""
    return dict(self._metrics.get(int(step), {}))

  # Saving.

  def save(self, step: int, state: PyTree, *, data_state: Mapping[str, Any] | None = None,
           metrics: Mapping[str, Any] | None = None) -> bool:
    """Saves ``state`` at ``step``; returns False if that step already exists.

    Args:
      step: the training step; names the folder.
      state: a pytree of jax / numpy arrays and Python scalars.
      data_state: JSON-serialisable dict, e.g. the input iterator position.
      metrics: numbers such as ``{"test_accuracy": 0.87}`` (array scalars too); the one
        named ``best_metric`` decides which checkpoint is the best.
    """
    if self.read_only:
      raise PermissionError(f"Checkpointer for {self.directory} is read-only.")
    step = int(step)
    data_state = _json_dict(data_state, "data_state")
    metrics = _json_dict(metrics, "metrics")
    if step in self._unreadable:
      target = self.set_aside(step, "unreadable")
      logger.warning("Renamed unreadable checkpoint %s to %s before saving step %d again.",
                     self._step_path(step), target, step)
    elif step in self._manager.all_steps():
      logger.info("Checkpoint for step %d already exists in %s; not saved again.",
                  step, self.directory)
      return False
    # Orbax would wait for the previous save here anyway. Waiting first lets its
    # manifest be written before this save's retention may delete anything.
    self.wait_until_finished()
    self._metrics[step] = metrics
    args = ocp.args.Composite(**{_STATE: ocp.args.StandardSave(state),
                                 _DATA_STATE: ocp.args.JsonSave(data_state)})
    try:
      saved = self._manager.save(step, args=args, metrics=metrics, force=True)
    except BaseException:
      self._metrics.pop(step, None)
      raise
    if saved:
      self._unmanifested.add(step)
      if not self.async_save:  # committed already
        self._write_manifests()
    return saved

  def wait_until_finished(self) -> None:
    """Blocks until pending writes (and the deletions they allow) are done, then writes
    the checksum manifests of the steps this object saved."""
    self._manager.wait_until_finished()
    self._write_manifests()

  def check_for_errors(self) -> None:
    """Raises the error of a finished background write, if any; does not wait."""
    self._manager.check_for_errors()

  def close(self) -> None:
    """Waits for pending writes, writes their manifests, releases orbax's resources."""
    self.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def set_aside(self, step: int, reason: str) -> epath.Path:
    """Renames step folder ``<step>`` to ``<step>.<reason>`` (never deleted); returns the new path.

    The step no longer counts as a checkpoint (e.g. ``reason="diverged"``: its
    parameters gave a non-finite loss).
    """
    source = self._step_path(step)
    target = _unused_path(self.directory, f"{step}.{reason}")
    self.wait_until_finished()
    self._manager.close()
    try:
      if ocp.multihost.is_primary_host(0):
        source.rename(target)
      ocp.multihost.sync_global_processes(f"snnjax_checkpoint_set_aside_{step}")
    finally:
      self._manager = self._open_manager()  # orbax's reload() would re-read (and trip on) metrics
    self._unreadable.discard(step)
    self._metrics.pop(step, None)
    return target

  # Restoring.

  def restore(self, step: int, template: PyTree) -> tuple[PyTree, dict]:
    """Restores ``step`` into the structure, shapes, dtypes and shardings of ``template``.

    Args:
      step: a step from :meth:`all_steps`.
      template: a pytree like the saved state. Leaves may be arrays (jax arrays restore
        with their sharding) or ``jax.ShapeDtypeStruct`` (restored with its ``sharding``;
        without one, orbax chooses the placement).

    Returns:
      ``(state, data_state)``; ``data_state`` is ``{}`` if none was saved.

    Raises:
      FileNotFoundError: there is no checkpoint for ``step``.
      CheckpointMismatchError: (a ValueError) the checkpoint holds a different tree or
        different shapes, e.g. the model config changed.
      UnreadableCheckpointError: the checkpoint's files cannot be read, or differ from
        its checksum manifest.
    """
    step = int(step)
    if step not in self._manager.all_steps():
      raise FileNotFoundError(f"No checkpoint for step {step} in {self.directory}; "
                              f"available steps: {self.all_steps()}.")
    self.wait_until_finished()
    try:
      self._verify(step)
      _check_matches(self._state_metadata(step), template, self._step_path(step), step)
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
      args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract),
                                   _DATA_STATE: ocp.args.JsonRestore()})
      try:
        restored = self._manager.restore(step, args=args)
      except Exception as e:  # pylint: disable=broad-except
        raise self._unreadable_error(step, e) from e
    except UnreadableCheckpointError:
      self._unreadable.add(step)
      raise
    self._unreadable.discard(step)
    return restored[_STATE], dict(restored[_DATA_STATE] or {})

  def restore_latest(self, template: PyTree) -> tuple[PyTree, dict, int] | None:
    """Restores the newest readable checkpoint: ``(state, data_state, step)``, None if none.

    Unreadable checkpoints are skipped with a warning naming the step and the error;
    nothing is deleted. Raises CheckpointMismatchError if the first readable one does not
    match ``template``, UnreadableCheckpointError if there are checkpoints but none is readable.
    """
    return self._restore_first(template, self.all_steps()[::-1])

  def restore_best(self, template: PyTree) -> tuple[PyTree, dict, int] | None:
    """Restores the best readable checkpoint: ``(state, data_state, step)``, None if none.

    Tries the steps by ``best_metric``, best first (latest on ties), then the unscored
    ones newest first; skips and raises as :meth:`restore_latest` does.
    """
    ranked = self._ranked(self.all_steps())
    return self._restore_first(template, ranked + [s for s in self.all_steps()[::-1]
                                                   if s not in ranked])

  # Internals.

  def _open_manager(self) -> ocp.CheckpointManager:
    """An orbax manager with this checkpointer's retention, without the read-only notices."""
    retention = [policies.LatestN(n=self.keep_last)]
    if self.keep_best:
      retention.append(policies.BestN(get_metric_fn=self._score, n=1,
                                      keep_checkpoints_without_metrics=False))
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(_not_a_read_only_notice)
    try:
      options = ocp.CheckpointManagerOptions(
          best_fn=self._score,  # the metrics item: orbax writes it only when tracking a best
          preservation_policy=_ReadableSteps(policies.AnyPreservationPolicy(retention),
                                             self._unreadable, self._scored_metrics),
          enable_async_checkpointing=self.async_save,
          read_only=self.read_only,
          create=not self.read_only,
          lightweight_initialize=True,  # metrics are read by _read_metrics, which survives garbage
      )
      return ocp.CheckpointManager(self.directory, options=options)
    finally:
      absl_logger.removeFilter(_not_a_read_only_notice)

  def _step_path(self, step: int) -> epath.Path:
    return self.directory / str(step)

  def _readable_steps(self) -> list[int]:
    return [s for s in self.all_steps() if s not in self._unreadable]

  def _score(self, metrics: Mapping[str, Any] | None) -> float:
    """``best_metric`` oriented so higher is better; -inf if absent or not finite."""
    try:
      value = float((metrics or {})[self.best_metric])
    except (KeyError, TypeError, ValueError):
      return -math.inf
    if not math.isfinite(value):
      return -math.inf
    return value if self.best_mode == "max" else -value

  def _scored_metrics(self, step: int) -> dict | None:
    """The step's verified metrics if they hold a ``best_metric`` score, else None."""
    metrics = self._metrics.get(step)
    return metrics if self._score(metrics) > -math.inf else None

  def _ranked(self, steps: Sequence[int]) -> list[int]:
    """The scored ones of ``steps``, best first (latest on ties)."""
    scored = sorted(((self._score(self._metrics.get(s)), s) for s in steps), reverse=True)
    return [s for score, s in scored if score > -math.inf]

  def _read_metrics(self, step: int) -> dict:
    """The step's metrics (orbax's ``metrics(step)``) once checked against its manifest.

    Damaged metrics only keep a step from counting as the best one: {} and a warning.
    """
    try:
      _check_manifest(self._step_path(step), metrics=True)
      metrics = self._manager.metrics(step) or {}
      if not isinstance(metrics, dict):
        raise ValueError(f"expected a JSON object, found {type(metrics).__name__}")
    except Exception as e:  # pylint: disable=broad-except
      logger.warning(
          "Metrics of checkpoint step %d (%s) are unreadable (%s: %s); that checkpoint "
          "cannot count as the best one.", step, self._step_path(step) / _METRICS,
          type(e).__name__, e)
      return {}
    return metrics

  def _state_metadata(self, step: int) -> PyTree:
    """The saved state's tree of array metadata; UnreadableCheckpointError if unreadable.

    Read with the item's handler: orbax's ``item_metadata(step)`` also parses the metrics
    item, so damaged metrics would make the state unreadable.
    """
    path = self._step_path(step) / _STATE
    try:
      if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing")
      handler = ocp.handlers.StandardCheckpointHandler()
      try:
        metadata = handler.metadata(path)
      finally:
        handler.close()
    except Exception as e:  # pylint: disable=broad-except
      raise self._unreadable_error(step, e) from e
    tree = getattr(metadata, "tree", metadata)
    if tree is None:
      raise self._unreadable_error(step, "the state item or its metadata is missing")
    return tree

  def _restore_first(self, template: PyTree,
                     order: Sequence[int]) -> tuple[PyTree, dict, int] | None:
    """Restores the first readable step of ``order``, warning about each skipped one."""
    if not order:
      return None
    for i, step in enumerate(order):
      try:
        state, data_state = self.restore(step, template)
      except UnreadableCheckpointError as e:
        following = (f"trying step {order[i + 1]} next" if i + 1 < len(order)
                     else "no other checkpoint is left")
        logger.warning(
            "Checkpoint step %d in %s is unreadable and is skipped; %s "
            "(nothing is deleted). Error: %s", step, self.directory, following, e)
        continue
      return state, data_state, step
    raise UnreadableCheckpointError(
        f"{self.directory} holds checkpoints for steps {sorted(order)} but none "
        f"can be read (see the warnings above). Repair or move that folder, or {_FRESH_RUN_HINT}.")

  def _unreadable_error(self, step: int, cause: Any) -> UnreadableCheckpointError:
    return UnreadableCheckpointError(_unreadable_message(self._step_path(step), step, cause))

  def _verify(self, step: int) -> None:
    """Checks ``step``'s files but its metrics against its manifest (UnreadableCheckpointError).

    The metrics are left to :meth:`_read_metrics`: damaged metrics only keep a step
    from counting as the best one.
    """
    path = self._step_path(step)
    start = time.perf_counter()
    try:
      count = _check_manifest(path, metrics=False)
    except ChecksumMismatchError as e:
      raise self._unreadable_error(step, str(e)) from e
    except ValueError as e:
      raise self._unreadable_error(
          step, f"its checksum manifest {path / _MANIFEST} is garbled ({e}); "
          "move that file away to restore this checkpoint unverified") from e
    except OSError as e:
      raise self._unreadable_error(step, e) from e
    if count is None:
      logger.info("Checkpoint step %d in %s has no %s (saved before checksums existed, or "
                  "stopped between commit and manifest); restoring it unverified.",
                  step, self.directory, _MANIFEST)
    else:
      logger.debug("Verified %d files of checkpoint step %d in %.2f s.",
                   count, step, time.perf_counter() - start)

  def _write_manifests(self) -> None:
    """Writes the manifests of this object's saved steps; call once they are committed.

    A step deleted meanwhile (by retention) or never committed gets none.
    """
    steps = sorted(self._unmanifested)
    if not steps:
      return
    self._unmanifested.clear()
    if ocp.multihost.is_primary_host(0):
      committed = set(self._manager.all_steps())
      for step in steps:
        path = self._step_path(step)
        if step not in committed or not path.is_dir():
          continue
        start = time.perf_counter()
        try:
          count = write_manifest(path)
        except OSError as e:  # the checkpoint itself is committed and usable
          logger.warning("Checkpoint step %d in %s is saved but its %s could not be written "
                         "(%s: %s); it will restore unverified.",
                         step, self.directory, _MANIFEST, type(e).__name__, e)
          continue
        logger.debug("Wrote %s for checkpoint step %d (%d files) in %.2f s.",
                     _MANIFEST, step, count, time.perf_counter() - start)
    ocp.multihost.sync_global_processes(f"snnjax_checkpoint_manifests_{steps[0]}_{steps[-1]}")


@dataclasses.dataclass
class _ReadableSteps(policies.PreservationPolicy):
  """Orbax's ``policy`` applied to the readable steps alone; every unreadable step is kept.

  The policy sees each step's verified metrics, None unless they hold a score (so
  ``BestN`` ranks only scored steps): orbax's own are unknown for steps found on disk.
  """

  policy: policies.PreservationPolicy
  unreadable: set[int]
  scored_metrics: Callable[[int], dict | None]

  def should_preserve(self, checkpoints, *, context) -> list[bool]:
    readable = [dataclasses.replace(c, metrics=self.scored_metrics(c.step))
                for c in checkpoints if c.step not in self.unreadable]
    verdicts = self.policy.should_preserve(readable, context=context)
    kept = {c.step for c, keep in zip(readable, verdicts) if keep} | self.unreadable
    return [c.step in kept for c in checkpoints]


def _not_a_read_only_notice(record: logging.LogRecord) -> bool:
  return not any(notice in record.getMessage() for notice in _READ_ONLY_NOTICES)


# Checksum manifests.


def write_manifest(step_dir: str | os.PathLike) -> int:
  """Writes ``<step_dir>/checksums.json`` atomically; returns how many files it lists."""
  step_dir = os.fspath(step_dir)
  names = sorted(os.path.relpath(os.path.join(root, f), step_dir).replace(os.sep, "/")
                 for root, _, files in os.walk(step_dir) for f in files)
  manifest = {"version": _MANIFEST_VERSION, "algorithm": "sha256",
              "files": {name: _file_record(os.path.join(step_dir, name)) for name in names
                        if name not in (_MANIFEST, _MANIFEST_TMP)}}
  tmp = os.path.join(step_dir, _MANIFEST_TMP)
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=1, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, os.path.join(step_dir, _MANIFEST))
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return len(manifest["files"])


def _file_record(path: str) -> dict:
  """``{"size": bytes, "sha256": hex}`` of one file."""
  with open(path, "rb") as f:
    digest = hashlib.file_digest(f, "sha256").hexdigest()
    size = os.fstat(f.fileno()).st_size
  return {"size": size, "sha256": digest}


def _read_manifest(step_dir: str | os.PathLike) -> dict | None:
  """The step's manifest, None if it has none; ValueError if it is garbled."""
  try:
    with open(os.path.join(os.fspath(step_dir), _MANIFEST), encoding="utf-8") as f:
      manifest = json.load(f)
  except FileNotFoundError:
    return None  # json's and unicode's errors are ValueErrors
  files = manifest.get("files") if isinstance(manifest, dict) else None
  if (not isinstance(files, dict) or manifest.get("algorithm") != "sha256"
      or not all(isinstance(r, dict) and isinstance(r.get("size"), int)
                 and isinstance(r.get("sha256"), str) for r in files.values())):
    raise ValueError("not a sha256 manifest of files with size and sha256")
  return manifest


def _check_manifest(step_dir: str | os.PathLike, *, metrics: bool) -> int | None:
  """Checks the step's metrics files, or all its other files, against its manifest.

  Returns how many files were checked, None if the step has no manifest. Raises
  ChecksumMismatchError, ValueError (a garbled manifest) or OSError.
  """
  manifest = _read_manifest(step_dir)
  if manifest is None:
    return None
  files = {k: v for k, v in manifest["files"].items() if k.startswith(f"{_METRICS}/") == metrics}
  _check_files(step_dir, files)
  return len(files)


def _check_files(step_dir: str | os.PathLike, files: Mapping[str, Mapping[str, Any]]) -> None:
  """Raises ChecksumMismatchError naming the first file that is missing or differs.

  Sizes are compared first, so a truncated file is found before anything is hashed.
  """
  step_dir = os.fspath(step_dir)
  for name, record in sorted(files.items()):
    try:
      size = os.stat(os.path.join(step_dir, name)).st_size
    except FileNotFoundError:
      raise ChecksumMismatchError(f"checksum mismatch in {name}: the file is missing") from None
    if size != record["size"]:
      raise ChecksumMismatchError(
          f"checksum mismatch in {name}: {size} bytes, {_MANIFEST} says {record['size']}")
  for name, record in sorted(files.items()):
    if _file_record(os.path.join(step_dir, name))["sha256"] != record["sha256"]:
      raise ChecksumMismatchError(f"checksum mismatch in {name}: its sha256 differs from "
                                  f"{_MANIFEST} (the file changed after it was saved)")


# Messages.


def _unreadable_message(path: epath.Path, step: int, cause: Any) -> str:
  """The UnreadableCheckpointError message for ``step`` at ``path`` failing with ``cause``."""
  head = f"Checkpoint at {path} (step {step}) cannot be read"
  if not isinstance(cause, BaseException):
    return f"{head}: {cause}"
  if failures.cause_of(cause) == "permission denied":
    denied = _denied_path(cause) or path
    return (f"{head}: permission denied on {denied} ({type(cause).__name__}: "
            f"{_first_line(cause)}). Fix the file permissions (e.g. `chmod -R u+rX "
            f"{path}` as its owner) or run as the user that owns these files.")
  return f"{head}: {type(cause).__name__}: {_first_line(cause)}"


def _denied_path(error: BaseException) -> str | None:
  """The file named by a PermissionError or a tensorstore message in the chain, if any."""
  for e in failures.exception_chain(error):
    if isinstance(e, PermissionError) and e.filename:
      return os.fspath(e.filename)
    found = _TS_FAILED_OPEN.search(str(e))
    if found:
      return found.group(1)
  return None


def _first_line(error: BaseException) -> str:
  """The error's first line, without tensorstore's spec dump, at most 500 characters."""
  lines = str(error).strip().splitlines()
  return lines[0].split(" [tensorstore_spec=")[0][:500] if lines else repr(error)


def _check_matches(saved: PyTree, template: PyTree, path: epath.Path, step: int) -> None:
  """Raises CheckpointMismatchError unless ``saved`` has the paths and shapes of ``template``."""
  saved, wanted = _flat(saved), _flat(template)
  missing = sorted(wanted.keys() - saved.keys())
  unexpected = sorted(saved.keys() - wanted.keys())
  reshaped = [f"{k}: {np.shape(saved[k])} in checkpoint vs {np.shape(wanted[k])} in model"
              for k in sorted(wanted.keys() & saved.keys())
              if np.shape(saved[k]) != np.shape(wanted[k])]
  problems = [f"{len(items)} {what} ({_listing(items)})" for items, what in (
      (missing, "arrays of the model are not in the checkpoint"),
      (unexpected, "arrays in the checkpoint are not in the model"),
      (reshaped, "shapes differ")) if items]
  if problems:
    raise CheckpointMismatchError(
        f"The checkpoint at {path} (step {step}) does not match the model/config. "
        + ". ".join(problems) + ". It was written by a run with a different configuration "
        f"(e.g. a changed model width or depth): {_FRESH_RUN_HINT}, or restore it with the "
        "configuration it was trained with.")


def _flat(tree: PyTree) -> dict[str, Any]:
  """Leaves keyed by their dotted path, as orbax names them."""
  return {".".join(k): v for k, v in ocp.tree.to_flat_dict(tree).items()}


def _listing(items: Sequence[str]) -> str:
  more = len(items) - _MAX_LISTED
  return "; ".join(items[:_MAX_LISTED]) + (f"; ... {more} more" if more > 0 else "")


# Folders and options.


def check_workdir(workdir: str | epath.PathLike, *, require_checkpoint: bool = False) -> list[int]:
  """Checks a run's workdir and its ``checkpoints`` folder; returns the committed steps.

  See :func:`check_checkpoint_dir` for ``require_checkpoint`` and the errors.
  """
  workdir = epath.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise NotADirectoryError(f"--workdir {workdir} exists but is not a directory. Choose "
                             "another --workdir or move that file away.")
  return check_checkpoint_dir(workdir / "checkpoints", require_checkpoint=require_checkpoint)


def check_checkpoint_dir(directory: str | epath.PathLike, *,
                         require_checkpoint: bool = False) -> list[int]:
  """Checks a checkpoint folder up front and returns its committed steps.

  Args:
    directory: the checkpoint folder, e.g. ``WORKDIR/checkpoints``.
    require_checkpoint: demand at least one checkpoint whose metadata is readable (to
      resume or evaluate); otherwise a missing or empty folder is fine (a fresh run).
      Array data is checked later, by restoring.

  Raises:
    NotADirectoryError: the path, or one of its parents, is not a directory.
    FileNotFoundError: a checkpoint is required and the folder is missing or holds none.
    UnreadableCheckpointError: a checkpoint is required and none is readable.
  """
  path = epath.Path(directory)
  _check_not_a_file(path)
  if not path.exists():
    if require_checkpoint:
      raise FileNotFoundError(f"No checkpoint folder at {path}: there is nothing to resume "
                              "or evaluate. Check --workdir, or train first.")
    return []
  with Checkpointer(path, read_only=True) as ckpt:
    steps = ckpt.all_steps()
    if not require_checkpoint:
      return steps
    if not steps:
      raise FileNotFoundError(f"{path} holds no checkpoint (no committed step folder such as "
                              f"{path / '1000'}). Check --workdir, or train first.")
    errors = []
    for step in reversed(steps):
      try:
        ckpt._state_metadata(step)  # pylint: disable=protected-access
        return steps
      except UnreadableCheckpointError as e:
        errors.append(str(e))
  raise UnreadableCheckpointError(f"{path} holds checkpoints for steps {steps} but none can "
                                  "be read: " + "; ".join(errors[:_MAX_LISTED]))


def _check_not_a_file(path: epath.Path) -> None:
  """Raises NotADirectoryError if ``path`` or its nearest existing parent is a file."""
  for p in (path, *path.parents):
    if p.exists():
      if not p.is_dir():
        raise NotADirectoryError(f"Checkpoint folder {path}: {p} exists but is not a "
                                 "directory. Choose another --workdir or move that file away.")
      return


def _check_options(keep_last: int, best_metric: str, best_mode: str) -> None:
  if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
    raise ValueError(f"keep_last must be an integer >= 1, got {keep_last!r}.")
  if not isinstance(best_metric, str) or not best_metric:
    raise ValueError(f"best_metric must be a non-empty string, got {best_metric!r}.")
  if best_mode not in ("max", "min"):
    raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}.")


def _json_dict(value: Mapping[str, Any] | None, name: str) -> dict:
  """``value`` as a dict with array scalars as numbers, checked to be JSON-serialisable.

  (Errors come here, not in orbax's writer thread.)
  """
  if value is None:
    return {}
  if not isinstance(value, Mapping):
    raise TypeError(f"{name} must be a dict, got {type(value).__name__}.")
  value = {str(k): np.asarray(v).tolist() if isinstance(v, (jax.Array, np.ndarray, np.generic))
           else v for k, v in value.items()}  # as JSON will have them
  try:
    json.dumps(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{name} must be JSON-serialisable: {e}") from e
  return value


def _unused_path(directory: epath.Path, name: str) -> epath.Path:
  path, n = directory / name, 1
  while path.exists():
    path, n = directory / f"{name}.{n}", n + 1
  return path
