"""Write failures of a run (checkpoints, metrics, TensorBoard) as one line that names the cause.

A full disk or a revoked permission shows up in many disguises: an ``OSError``
with an errno from Python's own writes, or a ``ValueError`` / ``RuntimeError``
from tensorstore and orbax's background threads whose text holds the system
message. :func:`cause_of` finds the cause in an exception, its chain and its
text; :class:`WriteFailure` is what the training loop raises so that train.py
prints ``error: no space left on device writing WORKDIR/checkpoints ...`` and
exits non-zero.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading

_CAUSES = (
    (errno.ENOSPC, "no space left on device", ("no space left on device", "enospc")),
    (errno.EDQUOT, "disk quota exceeded", ("disk quota exceeded", "edquot")),
    (errno.EACCES, "permission denied", ("permission denied", "permission_denied", "eacces")),
    (errno.EPERM, "permission denied", ("operation not permitted",)),
    (errno.EROFS, "read-only file system", ("read-only file system", "erofs")),
    (errno.EIO, "input/output error", ("input/output error",)),
)
_FIXES = {
    "no space left on device": "free space there (or move --workdir to a larger disk) and rerun "
                               "to resume from the last checkpoint",
    "disk quota exceeded": "free space within your quota and rerun to resume",
    "permission denied": "fix the permissions of that folder, or run as its owner",
    "read-only file system": "use a writable --workdir",
}


class WriteFailure(OSError):
  """Something the run writes (a checkpoint, metrics, TensorBoard events) could not be written."""


def exception_chain(error: BaseException) -> list[BaseException]:
  """``error`` and its causes and contexts, each once, outermost first."""
  chain, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    chain.append(error)
    error = error.__cause__ or error.__context__
  return chain


def cause_of(error: BaseException) -> str | None:
  """The system-level cause of ``error`` ("no space left on device", ...), or None.

  Found from an errno (or a PermissionError) in the exception chain, else from
  the system messages in its text (tensorstore and orbax pass them on as text).
  """
  chain = exception_chain(error)
  for e in chain:
    for number, name, _ in _CAUSES:
      if isinstance(e, OSError) and e.errno == number:
        return name
    if isinstance(e, PermissionError):
      return "permission denied"
  text = " ".join(str(e) for e in chain).lower()
  for _, name, phrases in _CAUSES:
    if any(p in text for p in phrases):
      return name
  return None


def write_failure(what: str, path, error: BaseException) -> WriteFailure:
  """A :class:`WriteFailure` for ``error`` while writing ``what`` at ``path``, cause first."""
  cause = cause_of(error)
  if cause is None:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return WriteFailure(f"writing {what} in {path} failed: {type(error).__name__}: {first_line}")
  fix = _FIXES.get(cause)
  return WriteFailure(f"{cause} writing {what} in {path}" + (f"; {fix}." if fix else "."))


@contextlib.contextmanager
def reported_as_write_failure(what: str, path, errors: type | tuple = Exception):
  """Runs the block; any of ``errors`` it raises comes out as :func:`write_failure`."""
  try:
    yield
  except errors as e:
    raise write_failure(what, path, e) from e


def _is_closed_loop_noise(error: BaseException) -> bool:
  return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


_ORBAX = f"{os.sep}orbax{os.sep}checkpoint{os.sep}"


class _DropBackgroundSaveErrors(logging.Filter):
  """Drops orbax's ERROR records and asyncio's about its failed tasks; the loop re-raises them.

  Only snnjax's checkpointing (orbax) runs asyncio event loops in a training run.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
      return True
    message = record.getMessage()  # asyncio: orbax's tasks/futures that failed with the save
    return (_ORBAX not in record.pathname and _ORBAX not in message
            and "exception was never retrieved" not in message)


def quiet_background_writer_noise() -> None:
  """Keeps a failed checkpoint write to the loop's one line (for command-line programs).

  When orbax's background save fails (a full disk), its threads log the error
  with a traceback per array, and tensorstore's pending callbacks print one
  ``RuntimeError: Event loop is closed`` traceback each into the closed event
  loop: hundreds of lines. :meth:`snnjax.train.checkpoint.Checkpointer.check_for_errors`
  raises the same error in the training loop, which reports it once.
  """
  for name in ("absl", "asyncio"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _DropBackgroundSaveErrors) for f in logger.filters):
      logger.addFilter(_DropBackgroundSaveErrors())
  previous_excepthook, previous_threading_hook = sys.excepthook, threading.excepthook
  previous_unraisable_hook = sys.unraisablehook

  def excepthook(kind, error, traceback):
    if not _is_closed_loop_noise(error):
      previous_excepthook(kind, error, traceback)

  def threading_excepthook(args):
    if not _is_closed_loop_noise(args.exc_value):
      previous_threading_hook(args)

  def unraisable_hook(unraisable):
    if not _is_closed_loop_noise(unraisable.exc_value):
      previous_unraisable_hook(unraisable)

  sys.excepthook, threading.excepthook = excepthook, threading_excepthook
  sys.unraisablehook = unraisable_hook
