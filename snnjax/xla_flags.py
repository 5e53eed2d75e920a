"""The XLA flags snnjax sets itself, and when: one home for them.

XLA reads ``$XLA_FLAGS`` once, when JAX creates its first backend, so these
are applied by the entry points (train.py and the ``python -m snnjax.*``
commands, :func:`apply`) before anything runs on a device. This module imports
nothing but the standard library for that reason. A flag the user's own
``$XLA_FLAGS`` already sets is left as the user set it.

    CPU_CONV_XLA_FLAG    JAX on the CPU alone: convolutions on XLA's own path, not
                         YNNPACK's fusion (benchmarks/cpu_conv_paths.py; docs/BENCHMARKS.md)
    CPU_REMAT_XLA_FLAG   JAX on the CPU alone with model.remat != "none"
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

#: XLA:CPU removes jax.checkpoint's optimisation barriers before common-subexpression
#: elimination (the "cse_barrier_expander" pass), which merges the recomputation back into
#: the forward pass and undoes rematerialisation; disabling that pass keeps it.
CPU_REMAT_XLA_FLAG = "--xla_disable_hlo_passes=cse_barrier_expander"


#: XLA:CPU hands every convolution to YNNPACK by default; keeping convolutions out of it
#: (its other fusions stay) makes the ResNet-19 training step 1.2-1.35x faster on this
#: project's 2-core AMD EPYC CPU (1.1x on one core) with the same loss and gradients within
#: 2e-7 relative (benchmarks/cpu_conv_paths.py). Turning YNNPACK off altogether is slower.
CPU_CONV_XLA_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


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


def with_conv_flag(xla_flags: str, cpu_only: bool) -> str:
  """``xla_flags`` with :data:`CPU_CONV_XLA_FLAG` for a CPU-only JAX, unless the user set the
  YNNPACK fusion types themselves."""
  if not cpu_only or "xla_cpu_experimental_ynn_fusion_type" in xla_flags:
    return xla_flags
  return f"{xla_flags} {CPU_CONV_XLA_FLAG}".strip()


def apply(remat: str = "none") -> str:
  """Sets $XLA_FLAGS for this process (call before anything runs on a device); returns it."""
  cpu_only = jax_uses_cpu_only()
  flags = with_remat_flag(with_conv_flag(os.environ.get("XLA_FLAGS", ""), cpu_only), remat,
                          cpu_only)
  os.environ["XLA_FLAGS"] = flags
  return flags
