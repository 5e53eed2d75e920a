"""Trains a spiking network: python train.py --config configs/X.py --workdir DIR [--config.a.b=v].

Rerunning with the same --workdir resumes from its newest good checkpoint.
For a multi-process job (several hosts, or several processes on one host),
give every process --num_processes, --process_id and --coordinator_address;
on clusters JAX detects (TPU pods, SLURM) --distributed alone is enough.
"""

import importlib.metadata
import importlib.util
import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and config.json.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() with cluster auto-detection.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def jax_uses_cpu_only() -> bool:
  """True if JAX will run on the CPU alone: JAX_PLATFORMS=cpu, or no accelerator plugin installed."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms == "cpu"
  plugins = (importlib.util.find_spec("jax_plugins")   # CUDA / ROCm plugins' namespace
             or importlib.metadata.entry_points(group="jax_plugins")
             or importlib.util.find_spec("libtpu"))
  return not plugins


def main(argv):
  del argv
  from snnjax.models import common
  remat = _CONFIG.value.model.remat
  os.environ["XLA_FLAGS"] = common.xla_flags_for_remat(os.environ.get("XLA_FLAGS", ""), remat,
                                                       cpu_only=jax_uses_cpu_only())
  import jax
  if _NUM_PROCESSES.value or _COORDINATOR.value or _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  logging.getLogger("snnjax").setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.WARNING)
  from snnjax.train import loop
  try:
    result = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError, loop.NonFiniteLossError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if jax.process_index() == 0 and "test_accuracy" in result:
    print(f"final test accuracy: {result['test_accuracy']:.4f} after {result['step']} steps")


if __name__ == "__main__":
  app.run(main)
