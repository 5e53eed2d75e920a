"""The fault campaign's quick preset (scripts/fault_campaign.py): real train.py runs, real faults.

Each test runs one case and asserts its row passed; the row's observed column
is the failure message. The full campaign: python scripts/fault_campaign.py.
"""

import errno
import importlib.util
import json
import logging
import os
import pathlib
import subprocess
import sys

import pytest

from snnjax.train import failures, metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fault_campaign", REPO / "scripts/fault_campaign.py")
campaign = importlib.util.module_from_spec(_spec)
sys.modules["fault_campaign"] = campaign  # dataclasses look their module up there
_spec.loader.exec_module(campaign)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
  return campaign.Harness(tmp_path_factory.mktemp("faults"), campaign.QUICK)


def _can_mount_tmpfs(tmp_path) -> bool:
  target = tmp_path / "probe"
  if campaign._mount_tmpfs(target, 1) is not None:  # pylint: disable=protected-access
    return False
  subprocess.run(["umount", str(target)], check=False)
  return True


@pytest.mark.parametrize("case", ["sigterm", "sigterm_job", "sigkill", "two_writers", "lock_taken",
                                  "config_change", "bit_flip", "nan", "bad_input"])
def test_fault_case(harness, case):
  row = campaign.run_case(case, harness, seed=0)
  assert row.passed, f"{row.case}: expected {row.expected}; observed {row.observed}"


def test_disk_full(harness, tmp_path):
  if not _can_mount_tmpfs(tmp_path):
    pytest.skip("mounting a tmpfs is not permitted on this machine")
  row = campaign.run_case("disk_full", harness)
  assert row.passed, f"{row.case}: expected {row.expected}; observed {row.observed}"


# --- Writers: real full-disk errors from /dev/full, exact records after a resume ---------------


def _read(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_metrics_write_to_a_full_disk_fails_at_once_naming_the_cause(tmp_path):
  (tmp_path / "metrics.jsonl").symlink_to("/dev/full")  # every write: ENOSPC
  writer = metrics.MetricWriter(tmp_path, resume_step=0)
  with pytest.raises(failures.WriteFailure, match="no space left on device writing metrics in"):
    writer.write("train", 1, {"loss": 0.5})
  writer.close()


def test_cause_is_found_in_tensorstore_text_and_in_errno():
  tensorstore_like = ValueError("RESOURCE_EXHAUSTED: Failed writing: \"/x/d/ab\": Failed to write "
                                "171 bytes to file 15: No space left on device [os_error_code='28']")
  assert failures.cause_of(tensorstore_like) == "no space left on device"
  assert failures.cause_of(OSError(errno.EDQUOT, "quota")) == "disk quota exceeded"
  chained = RuntimeError("save failed")
  chained.__cause__ = PermissionError(errno.EACCES, "denied")
  assert failures.cause_of(chained) == "permission denied"
  assert failures.cause_of(ValueError("shape mismatch")) is None
  message = str(failures.write_failure("a checkpoint", "/w/checkpoints", tensorstore_like))
  assert message.startswith("no space left on device writing a checkpoint in /w/checkpoints; ")


def test_resume_drops_records_past_the_checkpoint_and_a_torn_line(tmp_path):
  writer = metrics.MetricWriter(tmp_path, resume_step=None)
  for step in (2, 4, 6):
    writer.write("train", step, {"loss": 1.0 / step})
  writer.write("eval", 4, {"test_accuracy": 0.5})
  writer.close()
  with (tmp_path / "metrics.jsonl").open("a") as f:
    f.write('{"kind": "train", "st')  # a kill mid-write
  writer = metrics.MetricWriter(tmp_path, resume_step=4)
  writer.write("train", 6, {"loss": 0.1})
  writer.close()
  records = _read(tmp_path / "metrics.jsonl")
  assert [(r["kind"], r["step"]) for r in records] == [("train", 2), ("train", 4), ("eval", 4),
                                                       ("train", 6)]
  assert records[-1]["loss"] == 0.1
  assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2


def test_fresh_start_moves_old_records_aside_loudly(tmp_path, caplog):
  writer = metrics.MetricWriter(tmp_path)
  writer.write("train", 10, {"loss": 0.3})
  writer.close()
  with caplog.at_level(logging.WARNING, logger="snnjax"):
    metrics.MetricWriter(tmp_path, resume_step=None).close()
  assert "no checkpoint to resume" in caplog.text and "step 10" in caplog.text
  assert not (tmp_path / "metrics.jsonl").read_text()
  kept = list(tmp_path.glob("metrics.*.jsonl"))
  assert len(kept) == 1 and _read(kept[0])[0]["step"] == 10


# --- Stop requests ------------------------------------------------------------------------------


def test_sigint_requests_a_stop_and_a_second_one_interrupts():
  import signal
  from snnjax.train import preemption
  previous = signal.getsignal(signal.SIGINT)
  with preemption.StopRequests(multi_process=False) as stop:
    assert not stop.reached(1)
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.reached(2) and stop.signal_name == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is previous


def test_sigterm_is_caught_only_inside_the_context():
  import signal
  from snnjax.train import preemption
  previous = signal.getsignal(signal.SIGTERM)
  with preemption.StopRequests(multi_process=False) as stop:
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.reached(1) and stop.signal_name == "SIGTERM"
    os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM is ignored while saving
  assert signal.getsignal(signal.SIGTERM) is previous
