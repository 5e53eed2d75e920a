"""Stop requests: SIGTERM and SIGINT end a run with a checkpoint instead of losing work.

A preemptible machine (a TPU pod slice, a SLURM job past its time, a spot
instance) gets SIGTERM some seconds before it is killed. :class:`StopRequests`
turns that signal, and Ctrl-C (SIGINT), into a request the training loop polls
once per step with :meth:`StopRequests.reached`; the loop then finishes the
step, writes a checkpoint synchronously and exits with :data:`EXIT_PREEMPTED`.

Every process of a multi-process job must stop at the same step, or the pod
would save a checkpoint whose parts come from different steps. One process:
the signal handler sets a flag. Several processes: JAX's preemption service
(started by ``jax.distributed.initialize``) catches SIGTERM on any process and
:func:`jax.experimental.multihost_utils.reached_preemption_sync_point` returns
True on every process at the same step (the step after the latest one any
process had reached when the signal came); SIGINT is forwarded to it as a
SIGTERM to this process. This is the mechanism orbax's own preemption saves use.

A second SIGINT while the checkpoint is being written interrupts at once
(KeyboardInterrupt); further SIGTERMs are ignored until the run has exited.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import jax
from jax.experimental import multihost_utils

EXIT_PREEMPTED = 75
"""Exit status of a run stopped by SIGTERM/SIGINT after saving (sysexits' EX_TEMPFAIL:
rerun the same command to resume)."""

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequests:
  """Catches SIGTERM/SIGINT while active; :meth:`reached` says when to stop.

  Use as a context manager around the training loop (handlers are installed
  only in the main thread and restored on exit).
  """

  def __init__(self, multi_process: bool | None = None):
    self.multi_process = jax.process_count() > 1 if multi_process is None else multi_process
    self.signal_name: str | None = None
    self._requested = False
    self._previous: dict[int, object] = {}

  def __enter__(self) -> StopRequests:
    if threading.current_thread() is not threading.main_thread():
      return self
    # Several processes: JAX's preemption notifier owns SIGTERM; do not replace it.
    signals = (signal.SIGINT,) if self.multi_process else _SIGNALS
    for signum in signals:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    del frame
    if self._requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self._requested = True
    self.signal_name = self.signal_name or signal.Signals(signum).name
    if self.multi_process:
      os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption notifier

  def reached(self, step: int) -> bool:
    """Whether to stop after ``step`` (every process of a job gets the same answer)."""
    if not self.multi_process:
      return self._requested
    if multihost_utils.reached_preemption_sync_point(step):
      self.signal_name = self.signal_name or "SIGTERM"
      return True
    return False
