"""How snnjax's command-line programs print: snnjax's log records as one plain line each, and
progress bars only where a person watches.

    warning: checkpoint step 40 is unreadable (checksums.json: ...); skipped it
    config.json changed; the previous one is kept as config_history/config.<time>.json

Warnings and errors read ``level: message``, as the programs' ``error: ...``
lines do; information is the message alone. Nothing else of the record (time,
thread, file) is shown, and the records do not reach absl's handler.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


class LevelColonMessage(logging.Formatter):
  """``warning: message`` for warnings and errors, ``message`` for information."""

  def format(self, record: logging.LogRecord) -> str:
    if record.levelno >= logging.WARNING:
      return f"{record.levelname.lower()}: {record.getMessage()}"
    return record.getMessage()


@contextlib.contextmanager
def snnjax_log_lines(level: int = logging.INFO) -> Iterator[None]:
  """snnjax's records of ``level`` and above as plain lines on stderr; restored on exit."""
  log = logging.getLogger("snnjax")
  saved = log.level, log.propagate
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(LevelColonMessage())
  log.setLevel(level)
  log.propagate = False
  log.addHandler(handler)
  try:
    yield
  finally:
    log.removeHandler(handler)
    log.setLevel(saved[0])
    log.propagate = saved[1]


def on_terminal() -> bool:
  """True when stderr (where progress bars go) is a terminal; a log file gets lines alone."""
  return sys.stderr.isatty()
