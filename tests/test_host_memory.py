"""snnjax.host_memory: when train.py restarts itself with glibc's huge-page tunable, and that it works."""

import os
import pathlib
import subprocess
import sys
import textwrap
import types

import pytest

from snnjax import host_memory

GLIBC = host_memory.glibc_version()
MODE = host_memory.thp_mode()
USABLE = GLIBC is not None and GLIBC >= host_memory.MIN_GLIBC and MODE in host_memory.THP_MODES
needs_huge_pages = pytest.mark.skipif(
    not USABLE, reason=f"needs glibc >= 2.35 and transparent huge pages (glibc {GLIBC}, "
                       f"THP mode {MODE!r})")


def test_thp_mode_reads_the_bracketed_word(tmp_path):
  setting = tmp_path / "enabled"
  setting.write_text("always [madvise] never\n")
  assert host_memory.thp_mode(str(setting)) == "madvise"
  setting.write_text("[never]\n")
  assert host_memory.thp_mode(str(setting)) == "never"
  assert host_memory.thp_mode(str(tmp_path / "missing")) == ""


def test_requested_finds_the_tunable_among_others():
  assert host_memory.requested({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
  assert host_memory.requested({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"})
  assert not host_memory.requested({"GLIBC_TUNABLES": "glibc.malloc.hugetlb_x=1"})
  assert not host_memory.requested({})


@pytest.mark.parametrize("environ, mode, glibc, expected", [
    ({}, "madvise", (2, 36), True),
    ({}, "always", (2, 35), True),
    ({}, "never", (2, 36), False),                                   # THP off in the kernel
    ({}, "", (2, 36), False),                                        # no THP setting at all
    ({}, "madvise", (2, 34), False),                                 # glibc without the tunable
    ({}, "madvise", None, False),                                    # not glibc
    ({"SNNJAX_HUGE_PAGES": "0"}, "madvise", (2, 36), False),         # the user's opt-out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", (2, 36), False),  # user's own value
])
def test_should_reexec(environ, mode, glibc, expected):
  assert host_memory.should_reexec(environ, mode, glibc) is expected


def test_with_tunable_keeps_the_users_tunables_and_the_rest_of_the_environment():
  env = host_memory.with_tunable({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/h"})
  assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "HOME": "/h"}
  assert host_memory.with_tunable({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
  assert not host_memory.should_reexec(env, "madvise", (2, 36))       # so it restarts once


RESTART = textwrap.dedent("""
    import os, sys
    print("pid", os.getpid(), os.environ.get("GLIBC_TUNABLES"), sys.argv[1:], flush=True)
    from snnjax import host_memory
    host_memory.reexec_with_huge_pages()
    print("active", host_memory.active(), "jax imported", "jax" in sys.modules)
""")


@needs_huge_pages
def test_a_program_restarts_once_with_the_tunable_same_pid_same_arguments(tmp_path):
  script = tmp_path / "restart.py"
  script.write_text(RESTART)
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "SNNJAX_HUGE_PAGES")}
  out = subprocess.run([sys.executable, "-u", str(script), "--a=1", "b c"], env=env, text=True,
                       capture_output=True, timeout=60, check=True).stdout.splitlines()
  first, second, last = out
  assert first.split()[2:] == ["None", "['--a=1',", "'b", "c']"]
  assert second.split()[1] == first.split()[1]                          # the same process
  assert second.split()[2:] == ["glibc.malloc.hugetlb=1", "['--a=1',", "'b", "c']"]
  assert last == "active True jax imported False"

  opted_out = subprocess.run([sys.executable, str(script)], env={**env, "SNNJAX_HUGE_PAGES": "0"},
                             text=True, capture_output=True, timeout=60, check=True).stdout
  assert opted_out.splitlines()[1] == "active False jax imported False"


FAULTS = textwrap.dedent("""
    import ctypes, resource
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    size, rounds = 64 << 20, 5
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):          # what XLA:CPU does with a step's temporary buffer
      block = libc.malloc(size)
      ctypes.memset(block, 1, size)
      libc.free(ctypes.c_void_p(block))
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / rounds)
""")


@needs_huge_pages
def test_the_tunable_cuts_the_page_faults_of_a_large_fresh_allocation(tmp_path):
  script = tmp_path / "faults.py"
  script.write_text(FAULTS)
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}

  def faults_per_round(extra: dict) -> float:
    return float(subprocess.run([sys.executable, str(script)], env={**env, **extra}, text=True,
                                capture_output=True, timeout=60, check=True).stdout)

  small_pages = faults_per_round({})
  huge_pages = faults_per_round({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
  assert small_pages > 0.9 * (64 << 20) / 4096                       # every 4 KiB page, each round
  assert huge_pages < small_pages / 10, (small_pages, huge_pages)


def benchmark_modules():
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
  import common   # noqa: PLC0415  (benchmarks/ is not a package)
  import host_malloc  # noqa: PLC0415
  return common, host_malloc


@needs_huge_pages
def test_benchmark_children_all_run_on_the_malloc_train_py_uses(monkeypatch):
  common, host_malloc = benchmark_modules()
  monkeypatch.delenv("SNNJAX_HUGE_PAGES", raising=False)
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
  assert common.host_malloc_env() == {
      "GLIBC_TUNABLES": "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"}
  assert common.host_malloc_env({"SNNJAX_HUGE_PAGES": "0"}) == {}
  assert host_malloc.small_pages_env() == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4",
                                           "SNNJAX_HUGE_PAGES": "0"}


def test_the_harness_reports_faults_and_cpu_time_per_step():
  benchmark_modules()
  import harness  # noqa: PLC0415
  before = types.SimpleNamespace(ru_minflt=100, ru_utime=1.0, ru_stime=0.5)
  after = types.SimpleNamespace(ru_minflt=500, ru_utime=3.0, ru_stime=0.9)
  usage = harness.per_step_usage(before, after, 10.0, 10.4, steps=4)
  assert usage == pytest.approx({"minor_faults_per_step": 100, "user_s_per_step": 0.5,
                                 "sys_s_per_step": 0.1, "steal_s_per_step": 0.1})
  assert harness.per_step_usage(before, after, None, None, steps=4)["steal_s_per_step"] is None
