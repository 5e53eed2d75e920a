"""The XLA flags snnjax sets itself, and when: one home for them.

XLA reads ``$XLA_FLAGS`` once, when JAX creates its first backend, so these
are applied by the launcher (train.py) before JAX is imported. This module
imports nothing but the standard library for that reason. A flag the user's
own ``$XLA_FLAGS`` already sets is left as the user set it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

#: XLA:CPU removes jax.checkpoint's optimisation barriers before common-subexpression
#: elimination (the "cse_barrier_expander" pass), which merges the recomputation back into
#: the forward pass and undoes rematerialisation; disabling that pass keeps it.
CPU_REMAT_XLA_FLAG = "--xla_disable_hlo_passes=cse_barrier_expander"


def jax_uses_cpu_only() -> bool:
  """True if JAX will run on the CPU alone: JAX_PLATFORMS=cpu, or no accelerator plugin installed."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms == "cpu"
  plugins = (importlib.util.find_spec("jax_plugins")   # CUDA / ROCm plugins' namespace
             or importlib.metadata.entry_points(group="jax_plugins")
             or importlib.util.find_spec("libtpu"))
  return not plugins


def with_remat_flag(xla_flags: str, remat: str, cpu_only: bool) -> str:
  """``xla_flags`` (an $XLA_FLAGS value) with :data:`CPU_REMAT_XLA_FLAG` added for remat on CPU.

  Added when ``remat`` is not "none" and the process's JAX uses the CPU alone
  (``cpu_only``): GPU compilers expand the barriers after their own CSE and reject
  the flag's result ("Unsupported instruction opcode: opt-barrier").
  """
  if remat == "none" or not cpu_only or "cse_barrier_expander" in xla_flags:
    return xla_flags
  return f"{xla_flags} {CPU_REMAT_XLA_FLAG}".strip()
