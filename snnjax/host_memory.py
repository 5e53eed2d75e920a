"""Transparent huge pages for glibc's malloc: why train.py re-executes itself once.

XLA:CPU allocates every execution's temporary buffer afresh; for ResNet-19 width 1/4
at T=4, B=16 that is 353 MiB per training step. glibc serves an allocation that large
with ``mmap`` and returns it with ``munmap``, so each step faults its whole working set
back in, 4 KiB at a time: about 91,000 minor page faults and 0.25 CPU-s of kernel time
per step on this project's 2-core CPU (``benchmarks/host_malloc.py``). glibc's tunable
``glibc.malloc.hugetlb=1`` makes malloc ask for transparent huge pages for those
mappings (``madvise(MADV_HUGEPAGE)``): one fault per 2 MiB, 1/500 of the faults, a
third of the kernel time, and 10 to 20 % more training images/s. The numbers are
unchanged; only where the memory comes from changes.

glibc reads its tunables once, when a process starts, so the setting cannot be made
from inside Python. train.py therefore starts again (``os.execve``, same pid, same
arguments) with ``glibc.malloc.hugetlb=1`` added to ``$GLIBC_TUNABLES``, before it
imports JAX. It does so only where it helps: Linux with glibc >= 2.35, transparent
huge pages in "madvise" or "always" mode, and the tunable not already set by the user.
``SNNJAX_HUGE_PAGES=0`` keeps the process as started. This module imports only the
standard library.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

TUNABLE = "glibc.malloc.hugetlb"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
OPT_OUT = "SNNJAX_HUGE_PAGES"
MIN_GLIBC = (2, 35)   # the first glibc with glibc.malloc.hugetlb
THP_MODES = ("madvise", "always")   # the kernel modes in which malloc's madvise takes effect


def thp_mode(path: str = THP_SETTING) -> str:
  """The kernel's transparent huge page mode ("always", "madvise", "never"); "" if unknown.

  The setting file reads like ``always [madvise] never``: the bracketed word is the mode.
  """
  try:
    with open(path) as f:
      words = f.read().split()
  except OSError:
    return ""
  return next((w[1:-1] for w in words if w.startswith("[") and w.endswith("]")), "")


def glibc_version() -> tuple[int, int] | None:
  """(major, minor) of the C library if it is glibc, else None (musl, macOS, Windows)."""
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()   # "glibc 2.36"
    major, minor = version.split(".")[:2]
    return (int(major), int(minor)) if name == "glibc" else None
  except (AttributeError, ValueError, OSError):
    return None


def tunables(environ: Mapping[str, str]) -> list[str]:
  """The ``name=value`` items of $GLIBC_TUNABLES in ``environ`` (":"-separated)."""
  return [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]


def requested(environ: Mapping[str, str]) -> bool:
  """Whether $GLIBC_TUNABLES in ``environ`` sets glibc.malloc.hugetlb (to any value)."""
  return any(item.split("=")[0] == TUNABLE for item in tunables(environ))


def should_reexec(environ: Mapping[str, str], mode: str,
                  glibc: tuple[int, int] | None) -> bool:
  """Whether a process started with ``environ`` gains from restarting with the tunable."""
  return (environ.get(OPT_OUT, "1") != "0" and not requested(environ)
          and mode in THP_MODES and glibc is not None and glibc >= MIN_GLIBC)


def with_tunable(environ: Mapping[str, str]) -> dict[str, str]:
  """A copy of ``environ`` whose $GLIBC_TUNABLES also holds glibc.malloc.hugetlb=1."""
  return {**environ, "GLIBC_TUNABLES": ":".join([*tunables(environ), f"{TUNABLE}=1"])}


def active(environ: Mapping[str, str] = os.environ) -> bool:
  """Whether this process's malloc uses transparent huge pages (for the run summary)."""
  return f"{TUNABLE}=1" in tunables(environ) and thp_mode() in THP_MODES


def reexec_with_huge_pages(argv: Sequence[str] | None = None) -> None:
  """Restarts this process with glibc.malloc.hugetlb=1 where :func:`should_reexec` says so.

  Call it first thing in a program's ``__main__`` block: it does not return when it
  restarts. ``argv`` defaults to ``sys.orig_argv`` (the interpreter's own options
  included). If the restart fails, the process goes on as it was.
  """
  argv = list(sys.orig_argv if argv is None else argv)
  if not argv or not should_reexec(os.environ, thp_mode(), glibc_version()):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, argv, with_tunable(os.environ))
  except OSError:
    return
