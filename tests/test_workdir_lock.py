"""Tests for snnjax.train.workdir_lock, with real processes and real lock files.

Holders and racers are subprocesses that load the module from its file (so
they start fast, without JAX) and talk to the test over pipes.
"""

import json
import logging
import os
import pathlib
import select
import socket
import subprocess
import sys
import time

import pytest
from etils.epath import testing as epath_testing

from snnjax.train import workdir_lock
from snnjax.train.workdir_lock import WorkdirLockedError

LOGGER = "snnjax.train.workdir_lock"
MODULE = pathlib.Path(workdir_lock.__file__)
HOST = socket.gethostname()
HAS_PROC = os.path.exists(f"/proc/{os.getpid()}/stat")

_LOAD = f"""
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("workdir_lock", {str(MODULE)!r})
m = importlib.util.module_from_spec(spec)
sys.modules["workdir_lock"] = m
spec.loader.exec_module(m)
"""

# Takes the lock, says so, then holds it until its stdin closes (or it is killed).
_HOLDER = _LOAD + """
lock = m.acquire(sys.argv[1])
print("locked", "jax" in sys.modules, flush=True)
sys.stdin.read()
"""

# Per line read (a "go" file's path): says "ready", spins until the go file
# exists, then races for the lock and reports. A won lock is kept, not released.
_RACER = _LOAD + """
held = []
for line in sys.stdin:
  go = line.strip()
  print("ready", flush=True)
  while not os.path.exists(go):
    pass
  try:
    held.append(m.acquire(sys.argv[1]))
    print("won", flush=True)
  except m.WorkdirLockedError:
    print("lost", flush=True)
  except Exception as e:
    print("error", repr(e), flush=True)
"""


class Child:
  """A Python subprocess with line-based, time-limited reads of its stdout."""

  def __init__(self, script: str, *args: str, log: pathlib.Path):
    self._log = log
    self.proc = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log.open("wb"), bufsize=0)
    self.pid = self.proc.pid
    self._buf = b""

  def send(self, line: str) -> None:
    self.proc.stdin.write(line.encode() + b"\n")

  def readline(self, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while b"\n" not in self._buf:
      left = max(0.0, deadline - time.monotonic())
      ready, _, _ = select.select([self.proc.stdout], [], [], left)
      chunk = os.read(self.proc.stdout.fileno(), 4096) if ready else None
      if not chunk:
        why = "it exited" if ready else "timeout"
        raise AssertionError(f"child {self.pid} said nothing ({why}); "
                             f"stderr: {self._log.read_text()}")
      self._buf += chunk
    line, self._buf = self._buf.split(b"\n", 1)
    return line.decode()

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.kill()
    self.proc.wait()
    self.proc.stdin.close()
    self.proc.stdout.close()


@pytest.fixture
def spawn(tmp_path):
  children = []

  def start(script, *args):
    child = Child(script, *map(str, args), log=tmp_path / f"child{len(children)}.log")
    children.append(child)
    return child

  yield start
  for child in children:
    child.close()


def _dead_pid() -> int:
  """The pid of a process that has exited and been reaped."""
  proc = subprocess.Popen([sys.executable, "-c", ""])
  proc.wait()
  return proc.pid


def _write_lock(workdir: pathlib.Path, content: bytes | dict, *,
                age_s: float = 0.0) -> pathlib.Path:
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / "lock"
  path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
  mtime = time.time() - age_s
  os.utime(path, (mtime, mtime))
  return path


def _record(**overrides) -> dict:
  record = dict(pid=os.getpid(), host=HOST, started="2020-01-01T00:00:00.000000+00:00",
                proc_start=workdir_lock.proc_start_time(os.getpid()),
                boot_id=workdir_lock.boot_id(), argv=["train.py"])
  return {**record, **overrides}


def _holder_pid(path: pathlib.Path) -> int:
  return json.loads(path.read_text())["pid"]


def _warnings(caplog) -> str:
  return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_second_acquire_refused_while_holder_alive(tmp_path, spawn):
  workdir = tmp_path / "not" / "yet" / "there"
  holder = spawn(_HOLDER, workdir)
  assert holder.readline() == "locked False"   # and the module pulled in no JAX
  with pytest.raises(WorkdirLockedError) as info:
    workdir_lock.acquire(workdir)
  message = str(info.value)
  assert f"pid {holder.pid} on host {HOST}" in message
  assert str(workdir / "lock") in message and "choose another --workdir" in message
  assert info.value.holder.pid == holder.pid
  assert _holder_pid(workdir / "lock") == holder.pid   # untouched


def test_lock_of_sigkilled_holder_is_taken_over_with_warning(tmp_path, spawn, caplog):
  holder = spawn(_HOLDER, tmp_path)
  assert holder.readline().startswith("locked")
  holder.proc.kill()
  holder.proc.wait()
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    lock = workdir_lock.acquire(tmp_path)
  assert f"pid {holder.pid} on host {HOST}" in _warnings(caplog)
  assert "no longer running" in _warnings(caplog)
  assert _holder_pid(tmp_path / "lock") == os.getpid()
  lock.release()
  assert not (tmp_path / "lock").exists()
  assert list(tmp_path.iterdir()) == [tmp_path / "child0.log"]   # no stale file left aside


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc for process start times")
def test_live_pid_with_other_start_time_is_stale(tmp_path, caplog):
  start = workdir_lock.proc_start_time(os.getpid())
  _write_lock(tmp_path, _record(proc_start=start))   # really us: refused
  with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()} "):
    workdir_lock.acquire(tmp_path)
  _write_lock(tmp_path, _record(proc_start=start + 1))   # our pid, but another process
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    lock = workdir_lock.acquire(tmp_path)
  assert "now belongs to another process" in _warnings(caplog)
  assert lock.held()


def test_other_hosts_lock_refused_while_fresh_taken_over_when_old(tmp_path, caplog):
  other = _record(pid=4242, host="elsewhere.example", proc_start=1, boot_id="x")
  path = _write_lock(tmp_path, other, age_s=500)
  with pytest.raises(WorkdirLockedError) as info:
    workdir_lock.acquire(tmp_path, stale_after_s=600)
  assert "pid 4242 on host elsewhere.example" in str(info.value)
  assert "last heartbeat 500 s ago" in str(info.value)
  mtime = time.time() - 700
  os.utime(path, (mtime, mtime))
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    lock = workdir_lock.acquire(tmp_path, stale_after_s=600)
  assert "pid 4242 on host elsewhere.example" in _warnings(caplog)
  assert "heartbeat is 700 s old" in _warnings(caplog)
  assert lock.held()


def test_garbled_lock_waits_while_young_and_is_taken_over_when_old(tmp_path, caplog,
                                                                   monkeypatch):
  monkeypatch.setattr(workdir_lock, "_PATIENCE_S", 0.2)
  path = _write_lock(tmp_path, b'{"pid": 12')   # e.g. a crash mid-write, or still being written
  with pytest.raises(WorkdirLockedError, match="being written by another run or is garbled"):
    workdir_lock.acquire(tmp_path)
  mtime = time.time() - 60
  os.utime(path, (mtime, mtime))
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    lock = workdir_lock.acquire(tmp_path)
  assert "empty or garbled and 60 s old" in _warnings(caplog)
  assert lock.held()


def test_release_never_deletes_another_holders_lock(tmp_path, caplog):
  lock = workdir_lock.acquire(tmp_path)
  # Another host took the workdir over (say after this run missed its heartbeats).
  other = _record(pid=4242, host="elsewhere.example")
  path = _write_lock(tmp_path, other)
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    assert not lock.heartbeat(force=True)
    assert lock.current_holder() == workdir_lock.parse_record(path.read_bytes())
    lock.release()
    lock.release()
  assert json.loads(path.read_text()) == other
  assert "no longer held by this run" in _warnings(caplog)
  assert "Not removing" not in _warnings(caplog)   # said once, by the heartbeat


def test_release_without_a_heartbeat_says_it_leaves_the_other_lock(tmp_path, caplog):
  lock = workdir_lock.acquire(tmp_path)
  path = _write_lock(tmp_path, _record(pid=4242, host="elsewhere.example"))
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    lock.release()
  assert path.exists() and "Not removing" in _warnings(caplog)


def test_release_removes_own_lock_and_context_manager(tmp_path):
  with workdir_lock.acquire(tmp_path / "run") as lock:
    assert lock.held() and (tmp_path / "run" / "lock").exists()
  assert not (tmp_path / "run" / "lock").exists()
  lock.release()   # twice: harmless
  workdir_lock.acquire(tmp_path / "run").release()   # free again


def test_heartbeat_refreshes_mtime_at_most_every_interval(tmp_path):
  lock = workdir_lock.acquire(tmp_path)
  path = tmp_path / "lock"
  os.utime(path, (1_000_000, 1_000_000))
  assert lock.heartbeat()                        # within the interval: no I/O
  assert path.stat().st_mtime == 1_000_000
  assert lock.heartbeat(force=True)
  assert abs(path.stat().st_mtime - time.time()) < 60
  lock.release()


def test_stale_after_s_below_twice_the_heartbeat_interval_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="stale_after_s"):
    workdir_lock.acquire(tmp_path, stale_after_s=10)
  assert not (tmp_path / "lock").exists()


def test_two_racers_for_one_stale_lock_give_exactly_one_winner(tmp_path, spawn):
  workdir = tmp_path / "run"
  racers = [spawn(_RACER, workdir) for _ in range(2)]
  dead = _dead_pid()
  stale_locks = [  # (content, age): every kind of stale lock
      (_record(pid=4242, host="elsewhere.example"), 3600),
      (_record(pid=dead, proc_start=1), 0),
      (b"", 60),
  ]
  for round_ in range(21):
    content, age_s = stale_locks[round_ % len(stale_locks)]
    (workdir / "lock").unlink(missing_ok=True)   # the previous winner's
    _write_lock(workdir, content, age_s=age_s)
    go = tmp_path / f"go{round_}"
    for racer in racers:
      racer.send(str(go))
    assert [racer.readline() for racer in racers] == ["ready", "ready"]
    go.touch()
    results = [racer.readline() for racer in racers]
    assert sorted(results) == ["lost", "won"], (round_, results)
    winner = racers[results.index("won")]
    assert _holder_pid(workdir / "lock") == winner.pid, round_
    assert sorted(p.name for p in workdir.iterdir()) == ["lock"], round_


def test_object_store_url_is_locked_best_effort_with_warning(tmp_path, monkeypatch, caplog):
  monkeypatch.chdir(tmp_path)   # mock_epath serves gs:// from the local disk, relative to cwd
  with epath_testing.mock_epath(), caplog.at_level(logging.WARNING, logger=LOGGER):
    lock = workdir_lock.acquire("gs://bucket/run")
    assert "no atomic exclusive create" in _warnings(caplog)
    local = tmp_path / "gs:" / "bucket" / "run" / "lock"
    assert _holder_pid(local) == os.getpid()
    with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()} on host {HOST}"):
      workdir_lock.acquire(pathlib.Path("gs://bucket/run"))   # pathlib's "gs:/bucket/run"
    assert lock.heartbeat(force=True)
    lock.release()
    assert not local.exists()
