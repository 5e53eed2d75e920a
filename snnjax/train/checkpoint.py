"""Checkpoints of a training run: save, keep the last k and the best, resume.

A :class:`Checkpointer` wraps an orbax-checkpoint ``CheckpointManager`` over one
folder (the training loop passes ``WORKDIR/checkpoints``). Each step folder
``<folder>/<step>`` holds three items:

    state/       the train state pytree (orbax ``StandardSave``)
    data_state/  the input-iterator position (JSON)
    metrics/     the metrics given to :meth:`Checkpointer.save` (JSON; orbax's
                 own metrics item)

Retention keeps the last ``keep_last`` readable checkpoints and, with
``keep_best``, the best one by ``best_metric``. It is an orbax preservation
policy, so orbax deletes old steps only after the newer checkpoint is committed
(after its asynchronous write finished without error).

A checkpoint that cannot be read (truncated, missing or garbled files) is
skipped by :meth:`Checkpointer.restore_latest` with a warning and is never
deleted. Should training come back to that step number, the unreadable folder is
renamed to ``<step>.unreadable`` before the new checkpoint is written.

    ckpt = Checkpointer(workdir / "checkpoints", keep_last=3)
    restored = ckpt.restore_latest(state)          # None on a fresh run
    if restored is not None:
      state, data_state, step = restored
    ckpt.save(step, state, data_state=it.get_state(), metrics={"test_accuracy": acc})
    ckpt.close()                                    # waits for async writes
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

logger = logging.getLogger(__name__)

PyTree = Any

_STATE = "state"
_DATA_STATE = "data_state"
_METRICS = "metrics"  # orbax's metrics item: <step>/metrics/metrics
_MAX_LISTED = 5
_FRESH_RUN_HINT = "start a fresh run with a new --workdir"


class UnreadableCheckpointError(OSError):
  """A checkpoint exists but cannot be read (truncated, missing or garbled files)."""


class CheckpointMismatchError(ValueError):
  """A checkpoint's tree does not match the state it is restored into."""


class Checkpointer:
  """Saves and restores train states in one checkpoint folder.

  All processes of a multi-process JAX job must make the same calls; orbax
  writes shared files from the primary process only.

  Args:
    directory: the checkpoint folder (created unless ``read_only``).
    keep_last: how many of the most recent readable checkpoints to keep (>= 1).
    keep_best: also keep the checkpoint with the best ``best_metric``, however
      old it is.
    best_metric: key into the ``metrics`` given to :meth:`save`.
    best_mode: ``"max"`` or ``"min"``: whether larger or smaller is better.
    async_save: write checkpoints in the background; :meth:`save` returns once
      the arrays are copied off the devices. :meth:`wait_until_finished` and
      :meth:`close` make the writes durable.
    read_only: never write, rename or delete (for evaluation).
  """

  def __init__(
      self,
      directory: str | epath.PathLike,
      *,
      keep_last: int = 3,
      keep_best: bool = True,
      best_metric: str = "test_accuracy",
      best_mode: str = "max",
      async_save: bool = True,
      read_only: bool = False,
  ):
    _check_options(keep_last, best_metric, best_mode)
    self.directory = epath.Path(os.path.abspath(os.fspath(directory)))  # orbax needs absolute paths
    _check_not_a_file(self.directory)
    self.keep_last = keep_last
    self.keep_best = keep_best
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.async_save = async_save
    self.read_only = read_only
    self._unreadable: set[int] = set()
    self._metrics: dict[int, dict] = {}
    self._manager = self._open_manager()
    self._metrics = {s: self._read_metrics(s) for s in self._manager.all_steps()}

  # Queries.

  def all_steps(self) -> list[int]:
    """Every committed step in the folder, including ones found unreadable."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest step not found unreadable so far, or None."""
    steps = self._readable_steps()
    return steps[-1] if steps else None

  def best_step(self) -> int | None:
    """The step with the best ``best_metric`` (latest on ties), or None."""
    return self._best_of(self._readable_steps())

  def metrics(self, step: int) -> dict:
    """The metrics saved with ``step`` ({} if none or unreadable)."""
    return dict(self._metrics.get(int(step), {}))

  # Saving.

  def save(
      self,
      step: int,
      state: PyTree,
      *,
      data_state: Mapping[str, Any] | None = None,
      metrics: Mapping[str, Any] | None = None,
  ) -> bool:
    """Saves ``state`` at ``step``; returns False if that step already exists.

    Args:
      step: the training step; names the folder.
      state: a pytree of jax / numpy arrays and Python scalars.
      data_state: JSON-serialisable dict, e.g. the input iterator position.
      metrics: numbers such as ``{"test_accuracy": 0.87}``; the one named
        ``best_metric`` decides which checkpoint is the best.
    """
    if self.read_only:
      raise PermissionError(f"Checkpointer for {self.directory} is read-only.")
    step = int(step)
    data_state = _json_dict(data_state, "data_state")
    metrics = _json_dict(_plain_metrics(metrics), "metrics")
    if step in self._unreadable:
      self._move_aside(step)
    elif step in self._manager.all_steps():
      logger.info("Checkpoint for step %d already exists in %s; not saved again.",
                  step, self.directory)
      return False
    self._metrics[step] = metrics
    args = ocp.args.Composite(**{
        _STATE: ocp.args.StandardSave(state),
        _DATA_STATE: ocp.args.JsonSave(data_state),
    })
    try:
      return self._manager.save(step, args=args, metrics=metrics, force=True)
    except BaseException:
      self._metrics.pop(step, None)
      raise

  def wait_until_finished(self) -> None:
    """Blocks until pending writes (and the deletions they allow) are done."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending writes and releases orbax's resources."""
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  # Restoring.

  def restore(self, step: int, template: PyTree) -> tuple[PyTree, dict]:
    """Restores ``step`` into the structure, shapes, dtypes and shardings of ``template``.

    Args:
      step: a step from :meth:`all_steps`.
      template: a pytree like the saved state. Leaves may be arrays (jax arrays
        restore with their sharding) or ``jax.ShapeDtypeStruct`` (restored
        with its ``sharding``; without one, orbax chooses the placement).

    Returns:
      ``(state, data_state)``; ``data_state`` is ``{}`` if none was saved.

    Raises:
      FileNotFoundError: there is no checkpoint for ``step``.
      CheckpointMismatchError: (a ValueError) the checkpoint holds a different
        tree or different shapes, e.g. the model config changed.
      UnreadableCheckpointError: the checkpoint's files cannot be read.
    """
    step = int(step)
    if step not in self._manager.all_steps():
      raise FileNotFoundError(
          f"No checkpoint for step {step} in {self.directory}; "
          f"available steps: {self.all_steps()}.")
    try:
      saved = self._state_metadata(step)
      _check_matches(saved, template, self._step_path(step), step)
      restored = self._restore_items(step, template)
    except UnreadableCheckpointError:
      self._unreadable.add(step)
      raise
    self._unreadable.discard(step)
    return restored

  def restore_latest(self, template: PyTree) -> tuple[PyTree, dict, int] | None:
    """Restores the newest readable checkpoint: ``(state, data_state, step)``.

    Unreadable checkpoints are skipped with a warning naming the step and the
    error; nothing is deleted.

    Returns:
      None when the folder holds no checkpoint at all.

    Raises:
      CheckpointMismatchError: the newest readable checkpoint does not match
        ``template``.
      UnreadableCheckpointError: there are checkpoints but none can be read.
    """
    steps = self.all_steps()
    if not steps:
      return None
    for step in reversed(steps):
      try:
        state, data_state = self.restore(step, template)
      except UnreadableCheckpointError as e:
        logger.warning(
            "Checkpoint step %d in %s is unreadable and is skipped; falling "
            "back to the previous checkpoint (nothing is deleted). Error: %s",
            step, self.directory, e)
        continue
      return state, data_state, step
    raise UnreadableCheckpointError(
        f"{self.directory} holds checkpoints for steps {steps} but none can be "
        "read (see the warnings above). Repair or move that folder, or "
        f"{_FRESH_RUN_HINT}.")

  # Internals.

  def _open_manager(self) -> ocp.CheckpointManager:
    """An orbax manager with this checkpointer's retention and items."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item, save_args, restore_args in (
        (_STATE, ocp.args.StandardSave, ocp.args.StandardRestore),
        (_DATA_STATE, ocp.args.JsonSave, ocp.args.JsonRestore)):
      registry.add(item, save_args)
      registry.add(item, restore_args)
    options = ocp.CheckpointManagerOptions(
        best_fn=self._score,  # makes orbax write the metrics item
        best_mode="max",
        preservation_policy=_Retention(self._steps_to_keep),
        enable_async_checkpointing=self.async_save,
        read_only=self.read_only,
        create=not self.read_only,
        # Metrics are read by _read_metrics, which tolerates garbled files.
        lightweight_initialize=True,
    )
    return ocp.CheckpointManager(
        self.directory, options=options, handler_registry=registry)

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

  def _best_of(self, steps: Sequence[int]) -> int | None:
    scored = [(self._score(self._metrics.get(s)), s) for s in steps]
    scored = [pair for pair in scored if pair[0] > -math.inf]
    return max(scored)[1] if scored else None

  def _steps_to_keep(self, steps: Sequence[int]) -> set[int]:
    """Retention: the last ``keep_last`` readable steps, the best, every unreadable one."""
    readable = sorted(s for s in steps if s not in self._unreadable)
    keep = set(readable[-self.keep_last:]) | (set(steps) & self._unreadable)
    best = self._best_of(readable) if self.keep_best else None
    if best is not None:
      keep.add(best)
    return keep

  def _read_metrics(self, step: int) -> dict:
    path = self._step_path(step) / _METRICS / _METRICS
    try:
      if not path.exists():
        return {}
      metrics = json.loads(path.read_text())
      if not isinstance(metrics, dict):
        raise ValueError(f"expected a JSON object, found {type(metrics).__name__}")
    except Exception as e:  # pylint: disable=broad-except
      logger.warning(
          "Metrics of checkpoint step %d (%s) are unreadable (%s: %s); that "
          "checkpoint cannot count as the best one.", step, path, type(e).__name__, e)
      return {}
    return metrics

  def _state_metadata(self, step: int) -> PyTree:
    """The saved state's tree of array metadata; UnreadableCheckpointError if unreadable."""
    self._manager.wait_until_finished()
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

  def _restore_items(self, step: int, template: PyTree) -> tuple[PyTree, dict]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    args = ocp.args.Composite(**{
        _STATE: ocp.args.StandardRestore(abstract),
        _DATA_STATE: ocp.args.JsonRestore(),
    })
    try:
      restored = self._manager.restore(step, args=args)
    except Exception as e:  # pylint: disable=broad-except
      raise self._unreadable_error(step, e) from e
    return restored[_STATE], dict(restored[_DATA_STATE] or {})

  def _unreadable_error(self, step: int, cause: Any) -> UnreadableCheckpointError:
    if isinstance(cause, BaseException):
      cause = f"{type(cause).__name__}: {_first_line(cause)}"
    return UnreadableCheckpointError(
        f"Checkpoint at {self._step_path(step)} (step {step}) cannot be read: {cause}")

  def _move_aside(self, step: int) -> None:
    """Renames an unreadable step folder so that ``step`` can be saved again."""
    source = self._step_path(step)
    target = _unused_path(self.directory, f"{step}.unreadable")
    self._manager.close()
    try:
      if ocp.multihost.is_primary_host(0):
        source.rename(target)
      ocp.multihost.sync_global_processes(f"snnjax_checkpoint_move_aside_{step}")
    finally:
      self._manager = self._open_manager()
    logger.warning("Renamed unreadable checkpoint %s to %s before saving step %d again.",
                   source, target, step)
    self._unreadable.discard(step)
    self._metrics.pop(step, None)


class _Retention(ocp.checkpoint_managers.PreservationPolicy):
  """An orbax preservation policy that keeps the steps chosen by ``keep``."""

  def __init__(self, keep: Callable[[Sequence[int]], set[int]]):
    self._keep = keep

  def should_preserve(self, checkpoints, *, context) -> list[bool]:
    del context
    kept = self._keep([c.step for c in checkpoints])
    return [c.step in kept for c in checkpoints]


def check_workdir(
    workdir: str | epath.PathLike, *, require_checkpoint: bool = False
) -> list[int]:
  """Checks a run's workdir and its ``checkpoints`` folder; returns the committed steps.

  See :func:`check_checkpoint_dir` for ``require_checkpoint`` and the errors.
  """
  workdir = epath.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise NotADirectoryError(
        f"--workdir {workdir} exists but is not a directory. Choose another "
        "--workdir or move that file away.")
  return check_checkpoint_dir(workdir / "checkpoints",
                              require_checkpoint=require_checkpoint)


def check_checkpoint_dir(
    directory: str | epath.PathLike, *, require_checkpoint: bool = False
) -> list[int]:
  """Checks a checkpoint folder up front and returns its committed steps.

  Args:
    directory: the checkpoint folder, e.g. ``WORKDIR/checkpoints``.
    require_checkpoint: demand at least one checkpoint whose metadata is
      readable (to resume or evaluate); otherwise a missing or empty folder is
      fine (a fresh run). Array data is checked later, by restoring.

  Raises:
    NotADirectoryError: the path, or one of its parents, is not a directory.
    FileNotFoundError: a checkpoint is required and the folder is missing or
      holds none.
    UnreadableCheckpointError: a checkpoint is required and none is readable.
  """
  path = epath.Path(directory)
  _check_not_a_file(path)
  if not path.exists():
    if require_checkpoint:
      raise FileNotFoundError(
          f"No checkpoint folder at {path}: there is nothing to resume or "
          "evaluate. Check --workdir, or train first.")
    return []
  with Checkpointer(path, read_only=True) as ckpt:
    steps = ckpt.all_steps()
    if not require_checkpoint:
      return steps
    if not steps:
      raise FileNotFoundError(
          f"{path} holds no checkpoint (no committed step folder such as "
          f"{path / '1000'}). Check --workdir, or train first.")
    errors = []
    for step in reversed(steps):
      try:
        ckpt._state_metadata(step)  # pylint: disable=protected-access
        return steps
      except UnreadableCheckpointError as e:
        errors.append(str(e))
  raise UnreadableCheckpointError(
      f"{path} holds checkpoints for steps {steps} but none can be read: "
      + "; ".join(errors[:_MAX_LISTED]))


def _check_not_a_file(path: epath.Path) -> None:
  """Raises NotADirectoryError if ``path`` or its nearest existing parent is a file."""
  for p in (path, *path.parents):
    if p.exists():
      if not p.is_dir():
        raise NotADirectoryError(
            f"Checkpoint folder {path}: {p} exists but is not a directory. "
            "Choose another --workdir or move that file away.")
      return


def _check_options(keep_last: int, best_metric: str, best_mode: str) -> None:
  if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
    raise ValueError(f"keep_last must be an integer >= 1, got {keep_last!r}.")
  if not isinstance(best_metric, str) or not best_metric:
    raise ValueError(f"best_metric must be a non-empty string, got {best_metric!r}.")
  if best_mode not in ("max", "min"):
    raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}.")


def _check_matches(saved: PyTree, template: PyTree, path: epath.Path, step: int) -> None:
  """Raises CheckpointMismatchError unless ``saved`` has the paths and shapes of ``template``."""
  saved = _flat(saved)
  wanted = _flat(template)
  problems = []
  missing = sorted(wanted.keys() - saved.keys())
  unexpected = sorted(saved.keys() - wanted.keys())
  if missing:
    problems.append(f"{len(missing)} arrays of the model are not in the checkpoint "
                    f"({_listing(missing)})")
  if unexpected:
    problems.append(f"{len(unexpected)} arrays in the checkpoint are not in the model "
                    f"({_listing(unexpected)})")
  reshaped = [f"{k}: {np.shape(saved[k])} in checkpoint vs {np.shape(wanted[k])} in model"
              for k in sorted(wanted.keys() & saved.keys())
              if np.shape(saved[k]) != np.shape(wanted[k])]
  if reshaped:
    problems.append(f"{len(reshaped)} shapes differ ({_listing(reshaped)})")
  if problems:
    raise CheckpointMismatchError(
        f"The checkpoint at {path} (step {step}) does not match the model/config. "
        + ". ".join(problems)
        + ". It was written by a run with a different configuration (e.g. a "
        f"changed model width or depth): {_FRESH_RUN_HINT}, or restore it with "
        "the configuration it was trained with.")


def _flat(tree: PyTree) -> dict[str, Any]:
  """Leaves keyed by their dotted path, as orbax names them."""
  return {".".join(k): v for k, v in ocp.tree.to_flat_dict(tree).items()}


def _listing(items: Sequence[str]) -> str:
  more = len(items) - _MAX_LISTED
  return "; ".join(items[:_MAX_LISTED]) + (f"; ... {more} more" if more > 0 else "")


def _first_line(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  return lines[0][:500] if lines else repr(error)


def _plain_metrics(metrics: Mapping[str, Any] | None) -> dict | None:
  """Metrics with array scalars turned into Python numbers."""
  if metrics is None:
    return None
  if not isinstance(metrics, Mapping):
    raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}.")
  return {str(k): _plain(v) for k, v in metrics.items()}


def _plain(value: Any) -> Any:
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    return np.asarray(value).tolist()
  return value


def _json_dict(value: Mapping[str, Any] | None, name: str) -> dict:
  """``value`` as a dict, checked to be JSON-serialisable (errors here, not in a writer thread)."""
  if value is None:
    return {}
  if not isinstance(value, Mapping):
    raise TypeError(f"{name} must be a dict, got {type(value).__name__}.")
  try:
    json.dumps(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{name} must be JSON-serialisable: {e}") from e
  return dict(value)


def _unused_path(directory: epath.Path, name: str) -> epath.Path:
  path, n = directory / name, 1
  while path.exists():
    path, n = directory / f"{name}.{n}", n + 1
  return path
