"""One writer per training workdir: the lock file ``WORKDIR/lock``.

Two training processes given the same workdir would overwrite each other's
checkpoints and metrics. :func:`acquire` makes the second one fail fast instead:

    lock = workdir_lock.acquire(workdir)     # raises WorkdirLockedError if in use
    with lock:                               # release() on exit, even on errors
      for step in ...:
        ...
        lock.heartbeat()                     # every logged step; rate-limited

The lock file is JSON naming its holder: ``pid``, ``host``
(``socket.gethostname()``), ``started`` (ISO 8601, UTC), ``proc_start`` (field 22
of ``/proc/<pid>/stat``, the process's start time in clock ticks since boot, or
null where there is no ``/proc``), ``boot_id`` (``/proc/sys/kernel/random/boot_id``
or null) and ``argv``. Its modification time is the holder's heartbeat.

An existing lock is *stale*, and is taken over with a warning, when

* its host is this host and its pid is not running (or is a zombie), or the pid
  now belongs to another process (its ``/proc`` start time or the boot id
  differs from the recorded one);
* its host is another host and its heartbeat (the file's mtime) is older than
  ``stale_after_s``;
* it cannot be parsed (empty or garbled, e.g. a crash mid-write) and is older
  than a few seconds (a younger one may still be being written).

Otherwise :func:`acquire` raises :class:`WorkdirLockedError`.

Multi-process JAX jobs: only process 0 calls :func:`acquire` (all processes
share the workdir); the caller broadcasts the outcome so the other processes
stop too. This module imports no JAX.

Guarantees
----------
On a local disk, and on shared POSIX filesystems whose exclusive create is
atomic (NFSv3 and later, Lustre, GPFS):

* Of any number of processes that find no lock, exactly one gets it: the file
  is created with ``O_CREAT | O_EXCL``.
* Of two processes racing to take over one stale lock, exactly one gets it:
  the stale file is renamed to a unique name (atomic: one racer moves it, the
  other gets ``FileNotFoundError`` and retries the exclusive create), and a
  racer that finds it moved a lock other than the stale one it judged (the
  winner's new one) puts it back with ``os.link``, which never overwrites.
  With three or more racing for one stale lock within microseconds, that
  put-back can find a third racer's new lock in place: two runs then hold the
  lock; it is logged, and the displaced holder's ``heartbeat()`` returns False.
* :meth:`WorkdirLock.release` deletes the lock file only while it still holds
  this lock's record, never another holder's lock. Releasing twice is harmless.
* A process killed with SIGKILL (or by the OOM killer, or a lost node) cannot
  release; it leaves a stale lock that the next run takes over: at once on
  the same host, after ``stale_after_s`` from another host.

Not guaranteed:

* The heartbeat rule compares the file's mtime (set by the file server's or the
  holder's clock) with this host's clock, so clock skew between hosts moves
  the deadline by the skew. A holder that calls :meth:`WorkdirLock.heartbeat`
  less often than every ``stale_after_s`` (a long compile, evaluation or
  restore without heartbeats, or a process paused for that long) can be taken
  over from another host. :meth:`~WorkdirLock.heartbeat` then returns False
  and logs a warning; snnjax's training loop checks it before every write to
  the workdir and stops with :class:`WorkdirLockLostError`, but a checkpoint
  whose asynchronous write began before the takeover still lands.
* The host check trusts ``socket.gethostname()``: containers that share a
  hostname but not a pid namespace (or two machines with the same name) look
  like one host, and a live holder in another pid namespace looks dead.
* Deleting ``WORKDIR/lock`` by hand while its holder runs lets a second run in.
* Object stores (``gs://``, ``s3://`` and other URL schemes, through
  ``etils.epath``) have no atomic exclusive create: there :func:`acquire`
  refuses a lock it reads as live and otherwise writes its own, but two runs
  starting together can both succeed. It logs a warning saying so.
* The workdir's other contents are not protected against writers that do not
  call :func:`acquire`.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import logging
import os
import pathlib
import re
import socket
import sys
import time
import uuid
from typing import Any

logger = logging.getLogger(__name__)

LOCK_NAME = "lock"
HEARTBEAT_EVERY_S = 30.0   # heartbeat() touches the file at most this often
_GARBLED_GRACE_S = 5.0     # an unparsable lock younger than this may be mid-write
_PATIENCE_S = 2.0          # acquire() gives up retrying (races, mid-write files) after this
_POLL_S = 0.05
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+")   # gs://, s3://, ... ("gs:/" after pathlib)
_FIX = "wait for it to finish, stop it, or choose another --workdir"


@dataclasses.dataclass(frozen=True)
class LockRecord:
  """Who holds a lock: the JSON content of ``WORKDIR/lock``."""
  pid: int
  host: str
  started: str                  # ISO 8601, UTC
  proc_start: int | None = None  # /proc/<pid>/stat field 22; None without /proc
  boot_id: str | None = None
  argv: tuple[str, ...] = ()

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d["argv"] = list(self.argv)
    return json.dumps(d, indent=2) + "\n"


class WorkdirLockedError(RuntimeError):
  """The workdir's lock is held by a live process (or one not yet known to be gone).

  Attributes: ``workdir``, ``lock_path``, and ``holder`` (a :class:`LockRecord`,
  or None when the lock file could not be parsed).
  """

  def __init__(self, workdir: str, lock_path: str, holder: LockRecord | None,
               heartbeat_age_s: float | None = None):
    self.workdir, self.lock_path, self.holder = workdir, lock_path, holder
    self.heartbeat_age_s = heartbeat_age_s
    super().__init__(locked_message(workdir, lock_path, holder, heartbeat_age_s))

  def __reduce__(self):   # picklable across processes despite the extra arguments
    return type(self), (self.workdir, self.lock_path, self.holder, self.heartbeat_age_s)


def locked_message(workdir: str, lock_path: str, holder: LockRecord | None,
                   heartbeat_age_s: float | None = None) -> str:
  """The one-line explanation of a refused :func:`acquire`, with the fix."""
  if holder is None:
    return (f"workdir {workdir} is locked: {lock_path} is being written by another run or "
            f"is garbled; retry in a few seconds, or {_FIX}; if no other run uses this "
            f"workdir, delete {lock_path}")
  beat = ""
  if heartbeat_age_s is not None and holder.host != socket.gethostname():
    beat = f", last heartbeat {heartbeat_age_s:.0f} s ago"
  return (f"workdir {workdir} is in use by another run: pid {holder.pid} on host "
          f"{holder.host}, started {holder.started}{beat} (lock file {lock_path}). "
          f"To proceed, {_FIX}; if that process is gone, delete {lock_path}")


class WorkdirLockLostError(RuntimeError):
  """This run's lock was deleted, or taken over by another run, while it trained.

  The run must stop writing to the workdir: what is there now is the other run's.
  """


def lost_message(lock_path: str, holder: LockRecord | None, step: int) -> str:
  """The one-line explanation of a run stopped because its lock is no longer its own."""
  now = ("is gone" if holder is None else
         f"now names pid {holder.pid} on host {holder.host}, started {holder.started}")
  return (f"this run's workdir lock {lock_path} {now}: another run took the workdir over "
          "(this one missed its heartbeats, e.g. while paused) or the lock was deleted. "
          f"Stopped at step {step} without writing to the workdir, so the other run's "
          "checkpoints and metrics are kept; rerun the same command once no other run uses it")


# --- facts about processes --------------------------------------------------------------


def _read_small(path: str) -> str | None:
  try:
    with open(path, encoding="ascii", errors="replace") as f:
      return f.read()
  except OSError:
    return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
  """(state, start time in ticks since boot) from /proc/<pid>/stat; None if unavailable."""
  text = _read_small(f"/proc/{pid}/stat")
  if not text or ")" not in text:
    return None
  fields = text[text.rindex(")") + 1:].split()   # the command name may hold spaces and ')'
  try:
    return fields[0], int(fields[19])             # fields 3 and 22 of the whole line
  except (IndexError, ValueError):
    return None


def proc_start_time(pid: int) -> int | None:
  """Field 22 of /proc/<pid>/stat (start time since boot, in clock ticks); None without /proc."""
  stat = _proc_stat(pid)
  return None if stat is None else stat[1]


def boot_id() -> str | None:
  """This machine's boot id (changes at every boot); None without /proc."""
  text = _read_small("/proc/sys/kernel/random/boot_id")
  return (text or "").strip() or None


def pid_alive(pid: int) -> bool:
  """Whether ``pid`` is a running process on this host (zombies count as gone)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # exists, owned by another user
    pass
  stat = _proc_stat(pid)
  return stat is None or stat[0] != "Z"


def current_record() -> LockRecord:
  """The record this process writes into a lock it takes."""
  pid = os.getpid()
  return LockRecord(
      pid=pid, host=socket.gethostname(),
      started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
      proc_start=proc_start_time(pid), boot_id=boot_id(), argv=tuple(sys.argv))


# --- lock records and staleness ---------------------------------------------------------


def parse_record(raw: bytes) -> LockRecord | None:
  """The record in a lock file's bytes; None if empty, garbled or incomplete."""
  try:
    d = json.loads(raw.decode("utf-8"))
    pid, host, started = d["pid"], d["host"], d["started"]
  except (UnicodeDecodeError, ValueError, TypeError, KeyError):
    return None
  proc_start, boot, argv = d.get("proc_start"), d.get("boot_id"), d.get("argv", [])
  if (not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0   # kill(0 or -1) hits groups
      or not isinstance(host, str) or not isinstance(started, str)
      or not (proc_start is None or isinstance(proc_start, int))
      or not (boot is None or isinstance(boot, str)) or not isinstance(argv, list)):
    return None
  return LockRecord(pid, host, started, proc_start, boot, tuple(str(a) for a in argv))


def stale_reason(holder: LockRecord | None, age_s: float, *, stale_after_s: float) -> str | None:
  """Why a lock with this record and heartbeat age is stale; None if it may be live.

  Same host: judged by the process table (the heartbeat age does not matter).
  Other host: judged by the heartbeat age alone. Unparsable: by its age.
  """
  if holder is None:
    if age_s > _GARBLED_GRACE_S:
      return f"the lock file is empty or garbled and {age_s:.0f} s old"
    return None
  if holder.host == socket.gethostname():
    here_boot = boot_id()
    if holder.boot_id and here_boot and holder.boot_id != here_boot:
      return "this host has rebooted since"
    if not pid_alive(holder.pid):
      return "that process is no longer running"
    now_start = proc_start_time(holder.pid)
    if holder.proc_start is not None and now_start is not None and now_start != holder.proc_start:
      return (f"pid {holder.pid} now belongs to another process (start time {now_start}, "
              f"the lock's is {holder.proc_start})")
    return None
  if age_s > stale_after_s:
    return (f"it is from another host and its heartbeat is {age_s:.0f} s old "
            f"(more than stale_after_s={stale_after_s:g})")
  return None


def _describe(holder: LockRecord | None) -> str:
  if holder is None:
    return "of an unknown holder"
  return f"of pid {holder.pid} on host {holder.host} (started {holder.started})"


def _is_url(path: str) -> bool:
  return bool(_URL.match(path))


def _normalise_url(path: str) -> str:
  """``gs:/b/x`` (what pathlib makes of ``gs://b/x``) back to ``gs://b/x``."""
  return _URL.sub(lambda m: f"{m.group(1)}://", path, count=1)


# --- the local (POSIX) lock -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Seen:
  """A lock file as read: its bytes and identity, to check a later rename moved this one."""
  raw: bytes
  dev: int
  ino: int
  mtime_ns: int

  @property
  def age_s(self) -> float:
    return max(0.0, time.time() - self.mtime_ns / 1e9)


def _create_exclusive(path: str, data: bytes) -> bool:
  """Creates ``path`` holding ``data`` if it does not exist; False if it does."""
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  except FileExistsError:
    return False
  try:
    try:
      os.write(fd, data)
      os.fsync(fd)
    finally:
      os.close(fd)
  except BaseException:
    os.unlink(path)   # ours, but unreadable: do not leave it for others to wait on
    raise
  return True


def _observe(path: str) -> _Seen | None:
  """The lock file's bytes and identity; None if it does not exist (any more)."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except FileNotFoundError:
    return None
  try:
    chunks = []
    while chunk := os.read(fd, 65536):
      chunks.append(chunk)
    st = os.fstat(fd)
  finally:
    os.close(fd)
  return _Seen(b"".join(chunks), st.st_dev, st.st_ino, st.st_mtime_ns)


def _same(seen: _Seen, path: str) -> bool:
  now = _observe(path)
  return now is not None and (now.dev, now.ino, now.mtime_ns, now.raw) == (
      seen.dev, seen.ino, seen.mtime_ns, seen.raw)


def _put_back(aside: str, path: str) -> None:
  """Puts a live lock moved aside by mistake back at ``path``, never overwriting one there."""
  try:
    os.link(aside, path)
  except OSError as e:
    no_links = e.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK)
    if no_links and not os.path.exists(path):
      os.rename(aside, path)   # this filesystem has no hard links
      return
    if not no_links and not isinstance(e, FileExistsError):
      raise
    logger.warning("A racing acquire moved the live lock %s aside and another run locked "
                   "the workdir meanwhile; the first holder's heartbeat() will report its "
                   "lock lost.", path)
  os.unlink(aside)


def _move_aside(path: str, seen: _Seen) -> str | None:
  """Renames the stale lock ``seen`` to a unique name; None if another racer got there first.

  If the file moved is not ``seen`` (a racer already replaced the stale lock with
  its own), it is put back and None is returned.
  """
  aside = f"{path}.stale.{os.getpid()}.{uuid.uuid4().hex[:12]}"
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return None
  if _same(seen, aside):
    return aside
  _put_back(aside, path)
  return None


def _acquire_local(workdir: pathlib.Path, stale_after_s: float) -> WorkdirLock:
  workdir.mkdir(parents=True, exist_ok=True)
  path = os.fspath(workdir / LOCK_NAME)
  record = current_record()
  data = record.to_json().encode("utf-8")
  deadline = time.monotonic() + _PATIENCE_S
  moved: list[str] = []   # stale files, deleted only after ours exists (no inode reuse)
  taken_over: list[str] = []
  try:
    while True:
      if _create_exclusive(path, data):
        for what in taken_over:
          logger.warning("Took over the stale lock %s %s.", path, what)
        return WorkdirLock(path, record)
      seen = _observe(path)
      if seen is None:
        continue            # released or moved aside between our create and read
      holder = parse_record(seen.raw)
      reason = stale_reason(holder, seen.age_s, stale_after_s=stale_after_s)
      if reason is None:
        if holder is None and time.monotonic() < deadline:
          time.sleep(_POLL_S)   # probably mid-write: read it again
          continue
        raise WorkdirLockedError(os.fspath(workdir), path, holder, seen.age_s)
      aside = _move_aside(path, seen)
      if aside is not None:
        moved.append(aside)
        taken_over.append(f"{_describe(holder)}: {reason}")
      elif time.monotonic() > deadline:
        raise WorkdirLockedError(os.fspath(workdir), path, holder, seen.age_s)
  finally:
    for aside in moved:
      try:
        os.unlink(aside)
      except FileNotFoundError:
        pass


# --- the object-store lock (best effort) ------------------------------------------------


def _acquire_object_store(url: str, stale_after_s: float) -> WorkdirLock:
  from etils import epath   # only here: local paths need no epath backends

  logger.warning("%s is on an object store, which has no atomic exclusive create: the "
                 "workdir lock is best effort there and two runs started together can both "
                 "get it.", url)
  workdir = epath.Path(url)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK_NAME
  if path.exists():
    raw = path.read_bytes()
    holder = parse_record(raw)
    age_s = max(0.0, time.time() - path.stat().mtime)
    reason = stale_reason(holder, age_s, stale_after_s=stale_after_s)
    if reason is None:
      raise WorkdirLockedError(url, os.fspath(path), holder, age_s)
    logger.warning("Taking over the stale lock %s %s: %s.", path, _describe(holder), reason)
  record = current_record()
  path.write_text(record.to_json())
  return WorkdirLock(os.fspath(path), record, object_store=True)


# --- the public API ---------------------------------------------------------------------


class WorkdirLock:
  """A held workdir lock (from :func:`acquire`). Also a context manager that releases it."""

  def __init__(self, path: str, record: LockRecord, *, object_store: bool = False):
    self.path = path
    self.record = record
    self._object_store = object_store
    self._last_beat = time.monotonic()
    self._released = False
    self._lost = False

  def _epath(self):
    from etils import epath
    return epath.Path(self.path)

  def _read(self) -> bytes | None:
    """The lock file's bytes; None if it does not exist. Other errors propagate."""
    if self._object_store:
      p = self._epath()
      return p.read_bytes() if p.exists() else None
    seen = _observe(self.path)
    return None if seen is None else seen.raw

  def held(self) -> bool:
    """Whether the lock file still holds this lock's record (reads the file)."""
    return not self._released and parse_record(self._read() or b"") == self.record

  def current_holder(self) -> LockRecord | None:
    """The record the lock file holds now (None if it is gone, garbled or unreadable)."""
    try:
      return parse_record(self._read() or b"")
    except OSError:
      return None

  def heartbeat(self, *, force: bool = False) -> bool:
    """Refreshes the lock's heartbeat (its mtime); returns whether the lock is still ours.

    Cheap: touches the file at most once per ``HEARTBEAT_EVERY_S`` unless
    ``force``, and returns True in between without reading it. When the file
    no longer holds this lock (deleted by hand, or taken over by another host
    after missed heartbeats), it is left alone, a warning is logged once, and
    False is returned; writing on is then the caller's decision. I/O errors are
    logged and do not raise (True is returned; the next heartbeat retries).
    """
    if self._released or self._lost:
      return False
    now = time.monotonic()
    if not force and now - self._last_beat < HEARTBEAT_EVERY_S:
      return True
    self._last_beat = now
    try:
      if not self.held():
        self._lost = True
        logger.warning("The workdir lock %s is no longer held by this run (deleted, or taken "
                       "over after missed heartbeats); another run may be writing to the "
                       "workdir.", self.path)
        return False
      if self._object_store:
        self._epath().write_text(self.record.to_json())   # rewriting is the only way to touch
      else:
        os.utime(self.path)
    except OSError as e:   # e.g. a transient NFS error: try again next time
      logger.warning("Could not refresh the heartbeat of %s: %s", self.path, e)
    return True

  def release(self) -> None:
    """Deletes the lock file if it still holds this lock's record; harmless if repeated.

    Never raises for I/O errors: they are logged, and the lock left behind is
    stale once this process exits.

    Between the check and the deletion another process could replace the file
    only by taking over a lock it judged stale, i.e. only if this holder
    missed its heartbeats.
    """
    if self._released:
      return
    self._released = True
    try:
      if parse_record(self._read() or b"") != self.record:
        if not self._lost:   # heartbeat() has said so already
          logger.warning("Not removing %s: it no longer holds this run's lock.", self.path)
        return
      if self._object_store:
        self._epath().unlink()
      else:
        os.unlink(self.path)
    except FileNotFoundError:
      pass
    except OSError as e:   # never mask the error that ended the run
      logger.warning("Could not remove the workdir lock %s (the next run will take it over "
                     "once this process is gone): %s", self.path, e)

  def __enter__(self) -> WorkdirLock:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.release()

  def __repr__(self) -> str:
    state = "released" if self._released else "held"
    return f"WorkdirLock({self.path!r}, pid={self.record.pid}, {state})"


def acquire(workdir: str | os.PathLike, *, stale_after_s: float = 600.0) -> WorkdirLock:
  """Takes the lock ``WORKDIR/lock`` for this process, creating the workdir if missing.

  Args:
    workdir: the run's folder; a local path, or a URL (``gs://...``) handled
      best effort (see the module docstring).
    stale_after_s: a lock from another host whose heartbeat is older than this
      is taken over. At least ``2 * HEARTBEAT_EVERY_S``; the holder must call
      :meth:`WorkdirLock.heartbeat` more often than this, and clock skew
      between hosts must be well below it.

  Returns:
    The held lock; release it (or use it as a context manager) when done.

  Raises:
    WorkdirLockedError: a live process (or, from another host, one with a
      fresh heartbeat) holds the lock.
    ValueError: ``stale_after_s`` is too small.

  Only process 0 of a multi-process JAX job calls this; see the module docstring.
  """
  if not stale_after_s >= 2 * HEARTBEAT_EVERY_S:
    raise ValueError(f"stale_after_s={stale_after_s} must be at least "
                     f"{2 * HEARTBEAT_EVERY_S:g} (twice the heartbeat interval)")
  text = os.fspath(workdir)
  if _is_url(text):
    return _acquire_object_store(_normalise_url(text), stale_after_s)
  return _acquire_local(pathlib.Path(text), stale_after_s)
