"""Fault campaign for train.py: preemption, kills, a full disk, two writers, a lost lock, corruption, NaN.

Runs real train.py processes on tiny models and injects real faults (signals,
a full tmpfs, a second process, a flipped bit), then prints one row per case
with what was expected and what was observed:

    python scripts/fault_campaign.py [--quick] [--cases sigterm,sigkill,...] [--root DIR]
        [--out docs/results/faults.md] [--seed 0]

Cases:
    sigterm       SIGTERM mid-run: exit 75, a checkpoint at the step reached, the rerun resumes
                  there and ends bit-identical to an uninterrupted run; metrics.jsonl has each
                  step once.
    sigterm_job   the same for a two-process job (JAX distributed on localhost), SIGTERM to one
                  process only: both processes stop after one common step.
    sigkill       SIGKILL at random moments (one during compilation, one mid-save, the rest at
                  random times while training), then a run to the end: bit-identical, each step
                  once in metrics.jsonl, stale locks taken over.
    disk_full     the workdir on a small tmpfs that fills mid-run: the run stops within seconds
                  with one "no space left on device" line; the last committed checkpoint restores.
    two_writers   a second run on a busy workdir is refused naming the holder; the first run
                  ends bit-identical to the reference.
    lock_taken    a paused run whose lock another host's run took over: after SIGCONT it
                  stops with exit 2 and one error line naming the new holder, writes no
                  checkpoint or metrics row past the step it was paused at, and leaves the
                  new holder's lock in place.
    config_change resume with another T and neuron: refused, the differing keys listed,
                  config.json unchanged; with --allow_config_change it runs and keeps the old
                  config.json in config_history/.
    bit_flip      one flipped bit in the latest checkpoint: evaluate and the resume both fall
                  back to the previous checkpoint with a warning.
    nan           learning rate 1e30, a checkpoint every step: the run stops, names the last
                  checkpoint with finite values, and no checkpoint holds a NaN/inf.
    bad_input     a missing config file, a config with a syntax error, --workdir naming a
                  file: exit 2, one "error:" line, no traceback.

``--quick`` is the preset the test suite uses (tests/test_faults.py): fewer steps, fewer
kills, 8x8 synthetic images. The full campaign trains on Fashion-MNIST when Debian's
dataset-fashion-mnist is installed. Needs root (or CAP_SYS_ADMIN) for the tmpfs; without
it disk_full is reported as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
EXIT_PREEMPTED = 75

TINY = {"model.name": "vgg_small", "model.T": 2, "model.width": 0.0625, "sml.enabled": True,
        "sml.heads": (2,), "sml.head_channels": 8, "optimizer.learning_rate": 0.01,
        "optimizer.warmup_epochs": 0.0, "batch_size": 16, "progress_bar": False,
        "eval_every_epochs": 100.0, "log_every_steps": 2, "keep_checkpoints": 3}
SYNTHETIC = {"data.source": "synthetic", "data.synthetic.shape": (8, 8, 1),
             "data.synthetic.num_train_examples": 512, "data.synthetic.num_eval_examples": 64,
             "data.augment.crop_padding": 1}


@dataclasses.dataclass(frozen=True)
class Preset:
  steps: int             # steps of every training run
  checkpoint_every: int  # periodic checkpoints
  kills: int             # SIGKILLs in the sigkill case
  data: dict             # data overrides
  job_reference: bool    # sigterm_job: also train an uninterrupted job to compare bit for bit
  epochs: float = 1.0    # the schedule's length; steps must fit in it

  def flags(self) -> dict[str, Any]:
    return {**TINY, **self.data, "max_steps": self.steps, "num_epochs": self.epochs,
            "checkpoint_every_steps": self.checkpoint_every}


QUICK = Preset(steps=64, checkpoint_every=8, kills=2, data=SYNTHETIC,  # two synthetic epochs
               job_reference=False, epochs=2.0)
FULL = Preset(steps=400, checkpoint_every=25, kills=5, job_reference=True,
              data={"data.eval_split": "test[:2000]"} if FASHION_MNIST.is_dir() else
              {**SYNTHETIC, "data.synthetic.num_train_examples": 6400})


@dataclasses.dataclass
class Row:
  case: str
  expected: str
  observed: str
  passed: bool | None  # None: skipped


def config_flags(overrides: dict[str, Any]) -> list[str]:
  return [f"--config.{k}={v if isinstance(v, str) else repr(v)}" for k, v in overrides.items()]


class Harness:
  """Starts train.py / evaluate runs under ``root`` and reads back what they left."""

  def __init__(self, root: pathlib.Path, preset: Preset):
    self.root = pathlib.Path(root)
    self.preset = preset
    self.root.mkdir(parents=True, exist_ok=True)
    self._reference: dict | None = None

  def train_command(self, workdir: pathlib.Path, overrides: dict | None = None,
                    extra: tuple[str, ...] = ()) -> list[str]:
    flags = config_flags({**self.preset.flags(), **(overrides or {})})
    return [sys.executable, str(REPO / "train.py"), "--config",
            str(REPO / "configs/fmnist_vgg_sml.py"), "--workdir", str(workdir), *flags, *extra]

  def start(self, command: list[str], log_name: str, env: dict | None = None
            ) -> tuple[subprocess.Popen, pathlib.Path]:
    """Starts ``command`` in its own session; stdout and stderr go to ROOT/<log_name>.log."""
    log = self.root / f"{log_name}.log"
    with log.open("w") as f:
      process = subprocess.Popen(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    return process, log

  def start_job(self, workdir: pathlib.Path, log_name: str, processes: int = 2
                ) -> list[tuple[subprocess.Popen, pathlib.Path]]:
    """A multi-process train.py job on localhost, one simulated CPU device per process."""
    port = free_port()
    return [self.start(self.train_command(workdir, extra=(
        f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
        f"--process_id={i}")), f"{log_name}_p{i}",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
        for i in range(processes)]

  def run(self, command: list[str], log_name: str, timeout: float = 600) -> tuple[int, str]:
    process, log = self.start(command, log_name)
    process.wait(timeout=timeout)
    return process.returncode, log.read_text()

  def copy_of_reference(self, name: str) -> pathlib.Path:
    """ROOT/<name>: a copy of the finished uninterrupted run's workdir (without its lock)."""
    self.reference()
    workdir = self.root / name
    shutil.copytree(self.root / "reference", workdir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("lock"))
    return workdir

  def reference(self) -> dict:
    """The uninterrupted run's final state (trained once per harness)."""
    if self._reference is None:
      workdir = self.root / "reference"
      code, out = self.run(self.train_command(workdir), "reference")
      if code != 0:
        raise RuntimeError(f"the reference run failed ({code}):\n{out[-3000:]}")
      self._reference = restored_state(workdir)
    return self._reference


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def restored_state(workdir: pathlib.Path, step: int | None = None) -> dict:
  """{"step", "leaves"} of a workdir's latest (or given) checkpoint, restored with its config."""
  import jax
  import numpy as np
  from snnjax.train import config as config_lib
  from snnjax.train import loop
  experiment = loop.prepare(config_lib.load_saved_config(workdir), workdir)
  try:
    if step is None:
      state, _, step = experiment.checkpointer.restore_latest(experiment.template)
    else:
      state, _ = experiment.checkpointer.restore(step, experiment.template)
  finally:
    experiment.checkpointer.close()
  leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]
  return {"step": step, "leaves": leaves}


def bit_identical(a: dict, b: dict) -> bool:
  import numpy as np
  return (a["step"] == b["step"] and len(a["leaves"]) == len(b["leaves"])
          and all(np.array_equal(x, y) for x, y in zip(a["leaves"], b["leaves"])))


def train_steps(workdir: pathlib.Path) -> list[int]:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return [r["step"] for r in records if r["kind"] == "train"]


def steps_once(workdir: pathlib.Path, last: int) -> tuple[bool, str]:
  """Train records strictly increasing and ending at ``last``: each step logged once."""
  logged = train_steps(workdir)
  ok = bool(logged) and all(a < b for a, b in zip(logged, logged[1:])) and logged[-1] == last
  return ok, f"{len(logged)} train rows, steps {logged[:3]}...{logged[-2:]}, unique={ok}"


def committed_steps(workdir: pathlib.Path) -> list[int]:
  folder = workdir / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def wait_for(predicate, timeout: float, poll: float = 0.02) -> bool:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return True
    time.sleep(poll)
  return False


def error_lines(out: str) -> list[str]:
  return [line for line in out.splitlines() if line.startswith("error:")]


# --- Cases ----------------------------------------------------------------------------------


def case_sigterm(h: Harness) -> Row:
  reference = h.reference()
  workdir = h.root / "sigterm"
  process, log = h.start(h.train_command(workdir), "sigterm")
  target = h.preset.checkpoint_every + 3  # past a periodic checkpoint, before the next one
  reached = wait_for(lambda: any(s >= target for s in train_steps(workdir)) or
                     process.poll() is not None, 300)
  running = process.poll() is None
  os.killpg(process.pid, signal.SIGTERM)
  process.wait(timeout=300)
  out = log.read_text()
  saved = committed_steps(workdir)
  code = process.returncode
  code2, out2 = h.run(h.train_command(workdir), "sigterm_resume")
  resumed = f"resumed from step {saved[-1]}" in out2 if saved else False
  identical = code2 == 0 and bit_identical(restored_state(workdir), reference)
  once, detail = steps_once(workdir, h.preset.steps)
  passed = (reached and running and code == EXIT_PREEMPTED and bool(saved) and saved[-1] > target - 2
            and f"saved step {saved[-1]}" in out and resumed and identical and once)
  return Row("sigterm",
             f"exit {EXIT_PREEMPTED}, saves the step reached (>= {target - 1}), resume there, "
             "bit-identical, each step once",
             f"exit {code}, saved {saved[-1] if saved else None}, resumed={resumed}, "
             f"bit-identical={identical}; {detail}", passed)


def case_sigterm_job(h: Harness) -> Row:
  """SIGTERM to process 1 of a two-process job: both stop after the same step and save it."""
  reference = None
  if h.preset.job_reference:
    reference_dir = h.root / "job_reference"
    for process, _ in h.start_job(reference_dir, "job_reference"):
      process.wait(timeout=600)
    reference = restored_state(reference_dir)
  workdir = h.root / "sigterm_job"
  job = h.start_job(workdir, "sigterm_job")
  target = h.preset.checkpoint_every + 3
  reached = wait_for(lambda: any(s >= target for s in train_steps(workdir)) or
                     any(p.poll() is not None for p, _ in job), 300)
  running = all(p.poll() is None for p, _ in job)
  os.killpg(job[1][0].pid, signal.SIGTERM)  # one process only, as when one host is preempted
  codes = [p.wait(timeout=300) for p, _ in job]
  saved = committed_steps(workdir)
  said = f"saved step {saved[-1]}" in job[0][1].read_text() if saved else False
  resumed_job = h.start_job(workdir, "sigterm_job_resume")
  resume_codes = [p.wait(timeout=600) for p, _ in resumed_job]
  resumed = bool(saved) and f"resumed from step {saved[-1]}" in resumed_job[0][1].read_text()
  final = restored_state(workdir)
  identical = (resume_codes == [0, 0] and final["step"] == h.preset.steps and
               (reference is None or bit_identical(final, reference)))
  once, detail = steps_once(workdir, h.preset.steps)
  passed = (reached and running and codes == [EXIT_PREEMPTED] * 2 and bool(saved)
            and saved[-1] > target - 2 and said and resumed and identical and once)
  compared = "bit-identical to an uninterrupted job" if reference else "at the last step"
  return Row("sigterm_job", f"SIGTERM to process 1 of 2: both exit {EXIT_PREEMPTED} after one "
             f"common step, saved; the resumed job ends {compared}",
             f"exits {codes}, saved {saved[-1] if saved else None} (process 0 said so: {said}); "
             f"resume exits {resume_codes}, resumed there={resumed}, {compared}={identical}; "
             f"{detail}", passed)


def case_sigkill(h: Harness, seed: int) -> Row:
  reference = h.reference()
  rng = random.Random(seed)
  workdir = h.root / "sigkill"
  moments = ["compiling", "mid-save"] + ["training"] * max(0, h.preset.kills - 2)
  rng.shuffle(moments)
  observed = []
  for i, moment in enumerate(moments[:h.preset.kills]):
    before = max(train_steps(workdir), default=0)
    process, log = h.start(h.train_command(workdir), f"sigkill_{i}")
    if moment == "compiling":
      time.sleep(rng.uniform(1.0, 6.0))
      hit = process.poll() is None
    elif moment == "mid-save":
      folder = workdir / "checkpoints"
      hit = wait_for(lambda: process.poll() is not None or any(
          "tmp" in p.name for p in folder.glob("*")) if folder.is_dir() else False, 300, poll=0.002)
      hit = hit and process.poll() is None
    else:
      wait_for(lambda: max(train_steps(workdir), default=0) > before or process.poll() is not None,
               300)
      time.sleep(rng.uniform(0.0, 1.0))
      hit = process.poll() is None
    if process.poll() is None:
      os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    observed.append(f"{moment}{'' if hit else ' (missed)'} -> ckpts {committed_steps(workdir)}")
  code, out = h.run(h.train_command(workdir), "sigkill_final")
  took_over = "stale" in out.lower() or "taken over" in out.lower() or "took over" in out.lower()
  identical = code == 0 and bit_identical(restored_state(workdir), reference)
  once, detail = steps_once(workdir, h.preset.steps)
  passed = code == 0 and identical and once and took_over
  return Row("sigkill",
             f"{h.preset.kills} kills (seed {seed}), then exit 0, stale lock taken over, "
             "bit-identical, each step once",
             "; ".join(observed) + f"; final exit {code}, lock taken over={took_over}, "
             f"bit-identical={identical}; {detail}", passed)


def _mount_tmpfs(path: pathlib.Path, size_mb: int) -> str | None:
  """Mounts a tmpfs at ``path``; returns why not, or None on success."""
  path.mkdir(parents=True, exist_ok=True)
  try:
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                             str(path)], capture_output=True, text=True)
  except OSError as e:  # no mount program
    return str(e)
  return None if result.returncode == 0 else (result.stderr.strip() or "mount failed")


def _fill(path: pathlib.Path) -> None:
  """Writes zeros into ``path`` until the filesystem is full."""
  chunk = b"\0" * (1 << 20)
  with path.open("wb") as f:
    try:
      while True:
        f.write(chunk)
        f.flush()
    except OSError:
      pass
  try:
    with path.open("ab") as f:  # the last partial megabyte, a page at a time
      while True:
        f.write(b"\0" * 4096)
        f.flush()
  except OSError:
    pass


def case_disk_full(h: Harness) -> Row:
  mount = h.root / "tmpfs"
  why = _mount_tmpfs(mount, 64)
  expected = "exit != 0 within 30 s of the disk filling, one 'no space left on device' line, " \
             "no traceback, last committed checkpoint restores"
  if why is not None:
    return Row("disk_full", expected, f"skipped: cannot mount a tmpfs here ({why})", None)
  try:
    workdir = mount / "run"
    process, log = h.start(h.train_command(workdir, {"max_steps": 100000,
                                                     "checkpoint_every_steps": 4,
                                                     "num_epochs": 1000.0}), "disk_full")
    wait_for(lambda: len(committed_steps(workdir)) >= 1 or process.poll() is not None, 300)
    filled_at = time.time()
    _fill(mount / "filler")
    finished = wait_for(lambda: process.poll() is not None, 120)
    took = time.time() - filled_at
    if not finished:
      os.killpg(process.pid, signal.SIGKILL)
      process.wait()
    out = log.read_text()
    (mount / "filler").unlink()
    errors = error_lines(out)
    restores = False
    try:
      restores = restored_state(workdir)["step"] in committed_steps(workdir)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"restore failed: {type(e).__name__}: {str(e)[:200]}")
    passed = (finished and process.returncode not in (0, None) and took < 30 and len(errors) == 1
              and "no space left on device" in errors[0] and "Traceback" not in out and restores)
    return Row("disk_full", expected,
               f"exit {process.returncode} {took:.1f} s after the disk filled; "
               f"{errors[0] if errors else 'no error line'}; traceback={'Traceback' in out}; "
               f"last checkpoint restores={restores}", passed)
  finally:
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def case_two_writers(h: Harness) -> Row:
  reference = h.reference()
  workdir = h.root / "two_writers"
  first, first_log = h.start(h.train_command(workdir), "two_writers_a")
  wait_for(lambda: (workdir / "lock").exists() or first.poll() is not None, 300)
  os.killpg(first.pid, signal.SIGSTOP)  # paused, so it cannot finish before the second run checks
  try:
    code_b, out_b = h.run(h.train_command(workdir, {"optimizer.learning_rate": 0.02}),
                          "two_writers_b")
  finally:
    os.killpg(first.pid, signal.SIGCONT)
  first.wait(timeout=600)
  identical = first.returncode == 0 and bit_identical(restored_state(workdir), reference)
  errors = error_lines(out_b)
  names_holder = bool(errors) and str(first.pid) in errors[0]
  passed = code_b == 2 and names_holder and identical and "Traceback" not in out_b
  return Row("two_writers", "second run exits 2 naming the holder's pid; the first ends "
             "bit-identical to the reference",
             f"second exit {code_b}: {errors[0][:160] if errors else out_b[-200:]!r}; "
             f"first exit {first.returncode}, bit-identical={identical}", passed)


def case_lock_taken(h: Harness) -> Row:
  """The lock of a paused run replaced by another host's, as a takeover after missed heartbeats."""
  from snnjax.train import workdir_lock
  workdir = h.root / "lock_taken"
  process, log = h.start(h.train_command(workdir), "lock_taken")
  target = h.preset.checkpoint_every + 3
  reached = wait_for(lambda: any(s >= target for s in train_steps(workdir)) or
                     process.poll() is not None, 300)
  running = process.poll() is None
  os.killpg(process.pid, signal.SIGSTOP)
  paused_at = max(train_steps(workdir), default=0)
  other = workdir_lock.LockRecord(pid=4242, host="another-host", started="2026-01-01T00:00:00+00:00")
  (workdir / "lock").write_text(other.to_json())
  os.killpg(process.pid, signal.SIGCONT)
  process.wait(timeout=300)
  out = log.read_text()
  errors = error_lines(out)
  rows, saved = train_steps(workdir), committed_steps(workdir)
  log_every = h.preset.flags()["log_every_steps"]
  # A flush that had passed its check when the run was paused may still write its row.
  no_rows_after = max(rows, default=0) <= paused_at + log_every
  no_saves_after = max(saved, default=0) <= paused_at
  kept = workdir_lock.parse_record((workdir / "lock").read_bytes()) == other
  passed = (reached and running and process.returncode == 2 and len(errors) == 1
            and "another-host" in errors[0] and "Traceback" not in out and no_rows_after
            and no_saves_after and kept)
  return Row("lock_taken", "exit 2, one error naming the new holder, no checkpoint past the "
             "paused step, no row past the next log step, the new lock kept",
             f"exit {process.returncode}: {errors[0][:120] if errors else out[-200:]!r}; paused at "
             f"step {paused_at}, last row {max(rows, default=0)}, checkpoints {saved}, "
             f"new lock kept={kept}", passed)


def case_config_change(h: Harness) -> Row:
  workdir = h.copy_of_reference("config_change")
  before = (workdir / "config.json").read_bytes()
  changed = {"model.T": 4, "model.neuron": "if", "max_steps": h.preset.steps + 4}
  code, out = h.run(h.train_command(workdir, changed), "config_change")
  errors = error_lines(out)
  unchanged = (workdir / "config.json").read_bytes() == before
  listed = bool(errors) and "model.T" in errors[0] and "model.neuron" in errors[0]
  code2, _ = h.run(h.train_command(workdir, changed, extra=("--allow_config_change",)),
                   "config_change_allowed")
  history = sorted((workdir / "config_history").glob("*.json"))
  kept = len(history) == 1 and history[0].read_bytes() == before
  passed = code == 2 and listed and unchanged and "Traceback" not in out and code2 == 0 and kept
  return Row("config_change", "exit 2 listing model.T and model.neuron, config.json unchanged; "
             "with --allow_config_change exit 0 and the old config.json kept in config_history/",
             f"exit {code}: {errors[0][:200] if errors else out[-200:]!r}; config.json "
             f"unchanged={unchanged}; allowed rerun exit {code2}, old config kept={kept}", passed)


def flip_one_bit(step_folder: pathlib.Path) -> pathlib.Path:
  """Flips one bit in the middle of the largest array data file of a checkpoint step."""
  files = [p for p in (step_folder / "state").rglob("*") if p.is_file()
           and p.suffix not in (".json",) and "metadata" not in p.name]
  target = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0x10
  target.write_bytes(bytes(data))
  return target


def case_bit_flip(h: Harness) -> Row:
  workdir = h.copy_of_reference("bit_flip")
  steps = committed_steps(workdir)
  flipped = flip_one_bit(workdir / "checkpoints" / str(steps[-1]))
  code, out = h.run([sys.executable, "-m", "snnjax.evaluate", "--workdir", str(workdir)],
                    "bit_flip_evaluate")
  evaluated = f"checkpoint step {steps[-2]}" in out
  warned = f"step {steps[-1]}" in out and "checksum" in out.lower()
  code2, out2 = h.run(h.train_command(workdir, {"max_steps": h.preset.steps + 2}),
                      "bit_flip_resume")
  resumed = f"resumed from step {steps[-2]}" in out2
  passed = code == 0 and evaluated and warned and code2 == 0 and resumed
  return Row("bit_flip", f"evaluate and resume fall back from step {steps[-1]} to {steps[-2]} "
             "with a checksum warning",
             f"flipped a bit in {flipped.relative_to(workdir)}; evaluate exit {code}, used step "
             f"{steps[-2] if evaluated else '?'}, warned={warned}; resume exit {code2}, "
             f"resumed from {steps[-2] if resumed else '?'}", passed)


def case_nan(h: Harness) -> Row:
  import numpy as np
  workdir = h.root / "nan"
  good = h.preset.checkpoint_every
  code0, out0 = h.run(h.train_command(workdir, {"max_steps": good}), "nan_warmup")
  code, out = h.run(h.train_command(workdir, {"optimizer.learning_rate": 1e30,
                                              "checkpoint_every_steps": 1, "log_every_steps": 1,
                                              "max_steps": good + 8},
                                    extra=("--allow_config_change",)), "nan")
  errors = error_lines(out)
  steps = committed_steps(workdir)
  aside = sorted(p.name for p in (workdir / "checkpoints").glob("*.diverged"))
  finite = all(all(np.all(np.isfinite(x)) for x in restored_state(workdir, s)["leaves"]
                   if np.issubdtype(x.dtype, np.inexact)) for s in steps)
  named = bool(errors) and f"step {good} " in errors[0]
  passed = code0 == 0 and code == 2 and named and steps[-1:] == [good] and finite and bool(aside)
  passed = passed and "Traceback" not in out
  return Row("nan", f"{good} good steps, then lr 1e30 with a checkpoint every step: exit 2 "
             f"naming step {good}; the diverged checkpoint set aside; every checkpoint finite",
             f"exit {code}: {errors[0][:220] if errors else out[-200:]!r}; checkpoints {steps}, "
             f"set aside {aside}, all finite={finite}", passed)


def case_bad_input(h: Harness) -> Row:
  scratch = h.root / "bad_input"
  scratch.mkdir(exist_ok=True)
  (scratch / "syntax.py").write_text("def get_config(:\n")
  (scratch / "a_file").write_text("not a folder")
  base = [sys.executable, str(REPO / "train.py")]
  good_config = str(REPO / "configs/fmnist_vgg_sml.py")
  cases = {
      "missing config": base + ["--config", str(scratch / "nope.py"), "--workdir",
                                str(scratch / "w")],
      "syntax error": base + ["--config", str(scratch / "syntax.py"), "--workdir",
                              str(scratch / "w")],
      "workdir is a file": base + ["--config", good_config, "--workdir", str(scratch / "a_file")],
  }
  observed, passed = [], True
  for name, command in cases.items():
    code, out = h.run(command, f"bad_input_{name.replace(' ', '_')}", timeout=120)
    lines = error_lines(out)
    ok = code == 2 and len(lines) == 1 and "Traceback" not in out
    passed &= ok
    observed.append(f"{name}: exit {code}, {lines[0][:90] if lines else out[-120:]!r}")
  return Row("bad_input", "exit 2, one 'error:' line, no traceback", "; ".join(observed), passed)


CASES = {"sigterm": case_sigterm, "sigterm_job": case_sigterm_job, "sigkill": case_sigkill, "disk_full": case_disk_full,
         "two_writers": case_two_writers, "lock_taken": case_lock_taken,
         "config_change": case_config_change,
         "bit_flip": case_bit_flip, "nan": case_nan, "bad_input": case_bad_input}


def run_case(name: str, h: Harness, seed: int = 0) -> Row:
  return CASES[name](h, seed) if name == "sigkill" else CASES[name](h)


def format_table(rows: list[Row]) -> str:
  lines = ["| case | expected | observed | result |", "|---|---|---|---|"]
  for r in rows:
    result = "skipped" if r.passed is None else ("pass" if r.passed else "FAIL")
    lines.append(f"| {r.case} | {r.expected} | {r.observed} | {result} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="the test suite's small preset")
  parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: "
                      + ", ".join(CASES))
  parser.add_argument("--root", type=pathlib.Path, default=None,
                      help="folder for the runs (default: a new temporary folder)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the SIGKILL moments")
  parser.add_argument("--out", type=pathlib.Path, default=None, help="also write the table here")
  args = parser.parse_args(argv)
  names = [n.strip() for n in args.cases.split(",") if n.strip()]
  unknown = [n for n in names if n not in CASES]
  if unknown:
    print(f"error: unknown case(s) {unknown}; choose from {', '.join(CASES)}", file=sys.stderr)
    return 2
  root = args.root or pathlib.Path(tempfile.mkdtemp(prefix="snnjax_faults_"))
  preset = QUICK if args.quick else FULL
  harness = Harness(root, preset)
  print(f"fault campaign: preset {'quick' if args.quick else 'full'} ({preset.steps} steps, "
        f"checkpoint every {preset.checkpoint_every}), runs in {root}, load average "
        f"{os.getloadavg()[0]:.2f}", flush=True)
  rows = []
  for name in names:
    started = time.time()
    rows.append(run_case(name, harness, args.seed))
    print(f"  {name}: {rows[-1].passed} ({time.time() - started:.0f} s)", flush=True)
  table = format_table(rows)
  print(table)
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")
  return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
