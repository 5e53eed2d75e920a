"""The fault campaign's quick preset (scripts/fault_campaign.py): real train.py runs, real faults.

Each test runs one case and asserts its row passed; the row's observed column
is the failure message. The full campaign: python scripts/fault_campaign.py.
"""

import importlib.util
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fault_campaign", REPO / "scripts/fault_campaign.py")
campaign = importlib.util.module_from_spec(_spec)
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


@pytest.mark.parametrize("case", ["sigterm", "sigkill", "two_writers", "config_change",
                                  "bit_flip", "nan", "bad_input"])
def test_fault_case(harness, case):
  row = campaign.run_case(case, harness, seed=0)
  assert row.passed, f"{row.case}: expected {row.expected}; observed {row.observed}"


def test_disk_full(harness, tmp_path):
  if not _can_mount_tmpfs(tmp_path):
    pytest.skip("mounting a tmpfs is not permitted on this machine")
  row = campaign.run_case("disk_full", harness)
  assert row.passed, f"{row.case}: expected {row.expected}; observed {row.observed}"
