"""JAX's persistent compilation cache, on by default for snnjax's commands.

A resumed, repeated or re-evaluated run compiles the same programs again; with the
cache, XLA's executables are written to a folder the first time and read back
afterwards (the default config's train step: ~30 s to compile, well under a second
to load). train.py and the ``python -m snnjax.*`` analysis commands call
:func:`enable` before their first compilation.

    default folder   $XDG_CACHE_HOME/snnjax/jax_compilation_cache (~/.cache/... if unset)
    move it          JAX_COMPILATION_CACHE_DIR=/path/to/cache python train.py ...
    turn it off      JAX_COMPILATION_CACHE_DIR= python train.py ...   (set, but empty)

JAX stores a program only when compiling it took at least
``jax_persistent_cache_min_compile_time_secs`` (1 s by default), keys it by the
program, the devices and the JAX/XLA versions and flags (so a changed flag or
upgrade compiles afresh), and treats an unreadable or unwritable cache as a
miss with a warning: a full disk slows a run down but does not stop it, and an
entry cut short by a kill during its write is compiled afresh each time (with
that warning) until the folder is deleted.
"""

from __future__ import annotations

import os
import pathlib

ENV = "JAX_COMPILATION_CACHE_DIR"


def default_dir() -> pathlib.Path:
  """$XDG_CACHE_HOME/snnjax/jax_compilation_cache, with ~/.cache for an unset XDG_CACHE_HOME."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "snnjax" / "jax_compilation_cache"


def enable() -> str | None:
  """Turns the cache on in :func:`default_dir` unless $JAX_COMPILATION_CACHE_DIR is set.

  A set variable wins, as JAX reads it itself (an empty value turns the cache
  off). A default folder that cannot be created or written (a read-only home)
  leaves the cache off rather than warning at every compilation. Returns the
  folder in use, or None when off.
  """
  if ENV in os.environ:
    return os.environ[ENV] or None
  folder = default_dir()
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None
  if not os.access(folder, os.W_OK | os.X_OK):
    return None
  import jax
  jax.config.update("jax_compilation_cache_dir", str(folder))
  return str(folder)
