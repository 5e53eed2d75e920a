"""The lent-GPU scripts (scripts/gpu_*.sh) start on a machine that has JAX but not snnjax.

Device time is scarce (minutes per session), so what can be checked without a
device is checked here: every runtime dependency is either on the device image
or among the wheels carried to it, the environment script names what is missing
(exit 2) instead of letting a benchmark fail mid-run, and it puts this checkout
on the path. The scripts' full rehearsal on the CPU (``REHEARSAL=1``) takes
minutes and is run by hand, not here.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"


def bash_array(script: pathlib.Path, name: str) -> set[str]:
  """The words of a one-line bash array assignment NAME=(a b c) in a script."""
  match = re.search(rf"^{name}=\(([^)]*)\)", script.read_text(), re.MULTILINE)
  assert match, f"{name}=(...) not found in {script.name}"
  return set(match.group(1).split())


def requirement_name(requirement: str) -> str:
  """'etils[epath]>=1.5' -> 'etils' (PEP 508 name, lower case)."""
  return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()


def test_every_runtime_dependency_is_on_the_device_image_or_among_its_wheels():
  wheels = SCRIPTS / "device_wheels.sh"
  dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
  accounted = {n.lower() for n in bash_array(wheels, "ON_DEVICE_IMAGE")
               | bash_array(wheels, "NOT_NEEDED_ON_DEVICE") | bash_array(wheels, "PACKAGES")}
  missing = {requirement_name(r) for r in dependencies} - accounted
  assert not missing, f"add {sorted(missing)} to scripts/device_wheels.sh's lists"


def run_device_env(python_dir: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
  """Sources device_env.sh with `python3` resolving to the interpreter in python_dir."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  wrapper = bin_dir / "python3"   # a script, not a link: a venv's python finds its venv by path
  wrapper.write_text(f'#!/bin/sh\nexec {pathlib.Path(python_dir) / "python3"} "$@"\n')
  wrapper.chmod(0o755)
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": "",
         "DEVICE_WHEELS": str(tmp_path / "no_wheels"), "DEVICE_SITE": str(tmp_path / "site")}
  return subprocess.run(["bash", "-c", f"source {SCRIPTS / 'device_env.sh'} && echo \"$PYTHONPATH\""],
                        env=env, capture_output=True, text=True, timeout=120)


def test_device_env_puts_this_checkout_on_the_path_and_says_what_it_runs_on(tmp_path):
  result = run_device_env(os.path.dirname(sys.executable), tmp_path)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert re.fullmatch(r"python 3\.\d+\.\d+, jax \S+, devices \[.*\]", lines[0]), lines
  assert str(REPO) in lines[-1].split(":")


def test_device_env_names_what_cannot_be_imported_and_exits_2(tmp_path):
  bare = pathlib.Path(sys.base_prefix) / "bin"
  probe = subprocess.run([bare / "python3", "-c", "import jax"], capture_output=True)
  if probe.returncode == 0:
    pytest.skip(f"{bare / 'python3'} imports jax: no interpreter without it on this machine")
  result = run_device_env(str(bare), tmp_path)
  assert result.returncode == 2
  assert result.stdout == ""
  message = result.stderr.strip().splitlines()
  assert len(message) == 1, result.stderr
  assert "cannot import jax" in message[0] and "device_wheels.sh" in message[0]


@pytest.mark.parametrize("script", ["gpu_benchmarks.sh", "gpu_fmnist_best.sh", "device_env.sh",
                                    "device_wheels.sh"])
def test_device_scripts_parse(script):
  result = subprocess.run(["bash", "-n", SCRIPTS / script], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
