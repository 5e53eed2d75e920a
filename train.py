"""Trains a spiking network: python train.py --config configs/X.py --workdir DIR [--config.a.b=v].

Rerunning with the same --workdir resumes from its newest good checkpoint. Errors are one
line on stderr with exit status 2; SNNJAX_TRACEBACK=1 shows the traceback instead.
For a multi-process job (several hosts, or several processes on one host),
give every process --num_processes, --process_id and --coordinator_address;
on clusters JAX detects (TPU pods, SLURM) --distributed alone is enough.
"""

import logging
import os
import re
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
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume even though the config differs from the one the checkpoints were trained with "
    "(e.g. a longer schedule); the old config.json is kept in WORKDIR/config_history/.")
flags.mark_flags_as_required(["config", "workdir"])


def fail(message: str) -> None:
  """One line on stderr, exit status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _config_path(argv: list[str]) -> str:
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return "?"


def _one_line(error: BaseException) -> str:
  text = str(error).replace("\\n", " ").replace("\\'", "'")
  text = " ".join(text.split()).strip("'\"")
  return text[:400] or type(error).__name__


def _override_key(argv: list[str], last: str) -> str:
  """The dotted key of the --config.KEY=... override in ``argv`` that ends in ``last``."""
  for arg in argv:
    key = arg[len("--config."):].split("=", 1)[0] if arg.startswith("--config.") else ""
    if key.split(".")[-1] == last:
      return key
  return last


def config_error(path: str, error: BaseException, argv: list[str] = ()) -> str:
  """One line for an error raised while loading --config (or applying an override)."""
  if not os.path.isfile(path.split(":")[0]):
    return f"--config {path}: no such file. Give a config file such as configs/fmnist_vgg_sml.py."
  if isinstance(error, SyntaxError):
    return f"--config {path}: syntax error at line {error.lineno}: {error.msg}. Fix the file."
  if isinstance(error, (KeyError, AttributeError)):
    hint = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', str(error))
    if hint:
      key = _override_key(argv, hint.group(2))
      near = key[:len(key) - len(hint.group(2))] + hint.group(1)
      return (f"--config.{key}: no such config key; did you mean --config.{near}? "
              f"(every key is listed in snnjax/train/config.py)")
    return f"--config override: {_one_line(error)} (every key is listed in snnjax/train/config.py)."
  cause = error.__cause__ or error
  return f"--config {path}: {type(cause).__name__}: {_one_line(cause)}"


_BAD_VALUE = re.compile(r"flag --config\.([\w.]+)=(.*?): (.*)", re.S)
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "True or False"}


def flag_error(error: flags.Error, argv: list[str]) -> str:
  """One line for a flag absl rejected; a --config.KEY value of the wrong type says so."""
  text = str(error).strip().rstrip(".")
  if "Error whilst parsing config file" in text:  # what the config's get_config raised, last line
    raised = text.splitlines()[-1].removesuffix(". Pass --helpfull to see the flags")
    return f"--config {_config_path(argv)}: {raised.rstrip('.')}."
  match = _BAD_VALUE.match(text)
  if not match:
    return f"{text}. Pass --helpfull to see the flags."
  key, value, detail = match.groups()
  kind = re.search(r"invalid literal for (\w+)\(\)|could not convert string to (\w+)", detail)
  wanted = _TYPE_WORDS.get(next((g for g in kind.groups() if g), ""), "") if kind else ""
  if "Non-boolean argument" in detail:
    wanted = _TYPE_WORDS["bool"]
  if wanted:
    return f"--config.{key}={value}: config.{key} must be {wanted}, not {value!r}."
  return f"--config.{key}={value}: {_one_line(detail)}."


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every error as one line and exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(flag_error(e, argv))
  except Exception as e:  # pylint: disable=broad-except  # whatever the config file raises
    fail(config_error(_config_path(argv), e, argv))


def load_config():
  """The --config file with its overrides applied; a file that failed to load exits 2."""
  config = _CONFIG.value
  try:
    config.model  # pylint: disable=pointless-statement  # a config that failed to load raises here
  except Exception as e:  # pylint: disable=broad-except
    fail(config_error(flags.FLAGS["config"].config_filename, e.__cause__ or e, sys.argv))
  return config


def main(argv):
  del argv
  from snnjax import compilation_cache, xla_flags
  config = load_config()
  xla_flags.apply(remat=config.model.remat)
  compilation_cache.enable()
  import jax
  if _NUM_PROCESSES.value or _COORDINATOR.value or _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  absl_logging.set_verbosity(absl_logging.WARNING)
  from snnjax import console
  from snnjax.train import failures, loop
  failures.quiet_background_writer_noise()
  from snnjax.train import preemption, workdir_lock
  try:
    with console.snnjax_log_lines(logging.INFO):
      result = loop.train_and_evaluate(config, _WORKDIR.value,
                                       allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except (ValueError, OSError, loop.NonFiniteLossError, loop.WorkdirBusyError,
          workdir_lock.WorkdirLockedError, workdir_lock.WorkdirLockLostError) as e:
    if os.environ.get("SNNJAX_TRACEBACK"):
      raise
    fail(str(e))
  if result.get("preempted"):
    if jax.process_index() == 0:
      print(f"stopped by {result['signal']}: saved step {result['step']} in "
            f"{os.path.abspath(_WORKDIR.value)}/checkpoints; rerun the same command to resume.",
            flush=True)
    sys.exit(preemption.EXIT_PREEMPTED)
  if jax.process_index() == 0 and "test_accuracy" in result:
    print(f"final test accuracy: {result['test_accuracy']:.4f} after {result['step']} steps")


if __name__ == "__main__":
  from snnjax import host_memory
  host_memory.reexec_with_huge_pages()
  app.run(main, flags_parser=parse_flags)
