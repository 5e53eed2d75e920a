"""Evaluates a trained run: python -m snnjax.evaluate --workdir DIR [--checkpoint best|latest].

Restores the best (or latest) checkpoint of WORKDIR, runs jitted evaluation of
the SNN alone (no SML heads) on the test split (--split, default the run's
config.data.eval_split), and prints test accuracy, every neuron layer's firing
rate with the layers that read its spikes, and the energy table of
snnjax.energy at those firing rates (rows by synaptic layer, each naming the
neuron it reads, e.g. conv2 reads sn1).

    python -m snnjax.evaluate --workdir DIR --out docs/evaluation.md
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import pathlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax

from snnjax import compilation_cache, console, data, energy, xla_flags
from snnjax.train import checkpoint, loop, run_summary, steps
from snnjax.train import config as config_lib

CHECKPOINTS = ("best", "latest")


# --- The command line every analysis command shares ------------------------------------------
# This module is the one home of what snnjax's analysis commands (evaluate, probe, robustness)
# share: the common flags (command_parser), one-line errors with exit status 2 (run_command),
# quiet third-party logging (quiet_logs), progress (phase, show_bars; lines by loop.announce),
# restoring a run and its data split (restore_run, split_pipeline).


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Shows every flag's default; a help text that states its own default is left as it is."""

  def _get_help_string(self, action):
    if action.required:
      return f"{action.help} (required)"
    if "default:" in (action.help or ""):
      return action.help
    return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line on stderr and exit status 2."""

  def error(self, message: str):
    self.exit(2, f"error: {message}. See {self.prog} --help.\n")


def positive_int(text: str) -> int:
  """An integer >= 1 (argparse type)."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"{value} must be >= 1")
  return value


def command_parser(module: str, doc: str, *, split: str = "eval_split", seed: bool = False,
                   plot: bool = False, out_folder: bool = False) -> argparse.ArgumentParser:
  """The parser of ``python -m snnjax.<module>`` with the flags the analysis commands share.

  Flags: --workdir, --checkpoint (best), --split (the run's config.data.<split>),
  --batch-size (the run's batch_size), --out (a Markdown file, or with ``out_folder``
  a required folder); --seed (0) and --plot where the command takes them. ``doc``,
  the module docstring, is the --help description.
  """
  parser = _Parser(prog=f"python -m snnjax.{module}", description=doc,
                   formatter_class=_HelpFormatter)
  parser.add_argument("--workdir", required=True, type=pathlib.Path, metavar="DIR",
                      help="the folder train.py wrote (config.json, checkpoints/)")
  parser.add_argument("--checkpoint", default="best", choices=CHECKPOINTS,
                      help="which checkpoint: the best by test accuracy, or the latest")
  parser.add_argument("--split", default=None,
                      help=f"data split, e.g. 'test' or 'test[:1000]' (default: the run's "
                           f"config.data.{split})")
  parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                      help="examples per batch (default: the run's batch_size)")
  if seed:
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of the random draws")
  if out_folder:
    parser.add_argument("--out", type=pathlib.Path, required=True, metavar="DIR",
                        help="folder to write the pictures and the table into (created)")
  else:
    parser.add_argument("--out", type=pathlib.Path, default=None, metavar="FILE.md",
                        help="also write the report to this Markdown file (default: stdout only)")
  if plot:
    parser.add_argument("--plot", type=pathlib.Path, default=None, metavar="FILE.png",
                        help="draw the results into this PNG file (default: no plot)")
  return parser


def one_line(error: BaseException) -> str:
  """An error's message on one line (whitespace runs collapsed)."""
  return " ".join(str(error).split()) or type(error).__name__


# --- Quiet logs, progress ---------------------------------------------------------------------


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
  """Third-party warnings off; snnjax's own warnings as ``warning: ...`` lines on stderr.

  Orbax logs through absl ("CheckpointManagerOptions.read_only=True, setting
  save_interval_steps=0", "Given directory is read only=...") every time a
  checkpoint folder is opened read-only, as these commands do to check --workdir:
  nothing to act on. What does matter, e.g. a damaged checkpoint skipped, is
  logged by snnjax.train.checkpoint and still shows. Restores the loggers on exit.
  """
  absl_log = logging.getLogger("absl")
  saved = absl_log.level
  absl_log.setLevel(logging.ERROR)
  try:
    with console.snnjax_log_lines(logging.WARNING):
      yield
  finally:
    absl_log.setLevel(saved)


def show_bars() -> bool:
  """Progress bars on process 0 when stderr is a terminal; a log file gets the lines alone."""
  return jax.process_index() == 0 and console.on_terminal()


@contextlib.contextmanager
def phase(what: str) -> Iterator[None]:
  """Announces ``what ...`` and, when the block is done, ``what: N s``."""
  loop.announce(f"{what} ...")
  started = time.perf_counter()
  yield
  loop.announce(f"{what}: {time.perf_counter() - started:.1f} s")


def evaluate_pass(eval_step: Callable, state: Any, batches: Iterable[dict], num_batches: int,
                  mesh: Any, what: str) -> dict[str, float]:
  """:func:`snnjax.train.loop.evaluate` with a progress bar, then one line: accuracy, seconds."""
  started = time.perf_counter()
  results = loop.evaluate(eval_step, state, batches, mesh, num_batches, progress=show_bars())
  loop.announce(f"{what}: test accuracy {results['test_accuracy']:.4f} "
                f"({time.perf_counter() - started:.1f} s)")
  return results


# --- Restoring a run --------------------------------------------------------------------------


def check_run_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  """``workdir`` if it is a folder train.py wrote, else an OSError naming it and the fix."""
  workdir = pathlib.Path(workdir)
  if not workdir.exists():
    raise FileNotFoundError(f"--workdir {workdir}: no such folder. Give the --workdir a "
                            "training run wrote (python train.py --config ... --workdir DIR).")
  checkpoint.check_checkpoint_dir(workdir / "checkpoints", require_checkpoint=True)
  if not (workdir / "config.json").is_file():
    raise FileNotFoundError(f"--workdir {workdir} has checkpoints but no config.json: it was not "
                            "written by train.py. Give the --workdir of a train.py run.")
  return workdir


def restore_run(workdir: str | pathlib.Path, which: str = "best"):
  """(config, experiment, state, step) of a trained WORKDIR's best or latest checkpoint.

  A damaged checkpoint (unreadable or failing its checksums) is skipped with a
  warning naming its step: "best" falls back to the next best one, then to the
  newest readable one; "latest" to the previous one.
  """
  if which not in CHECKPOINTS:
    raise ValueError(f"--checkpoint {which!r} is unknown; choose one of {', '.join(CHECKPOINTS)}.")
  workdir = check_run_dir(workdir)
  config = config_lib.load_saved_config(workdir)
  experiment = loop.prepare(config, workdir, read_only=True)
  try:
    restore = (experiment.checkpointer.restore_best if which == "best"
               else experiment.checkpointer.restore_latest)
    restored = restore(experiment.template)
    saved_metrics = {} if restored is None else experiment.checkpointer.metrics(restored[2])
  finally:
    experiment.checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no checkpoint.")
  state, _, step = restored
  accuracy = saved_metrics.get("test_accuracy")
  loop.announce(f"restored checkpoint step {step} ({which}"
                + (f", test accuracy {accuracy:.4f} when saved" if accuracy is not None else "")
                + f") from {workdir / 'checkpoints'}")
  for name, text in (("devices", run_summary.devices_line(experiment.mesh)),
                     ("model", run_summary.model_line(config.model)),
                     ("params", run_summary.params_line(experiment.template.params))):
    loop.announce(f"{name:<9} {text}")
  return config, experiment, state, step


def split_pipeline(config: Any, experiment: loop.Experiment, split: str,
                   batch_size: int | None) -> data.DataPipeline:
  """The eval pipeline of ``split`` at ``batch_size`` (global; default the run's batch_size).

  Reuses the experiment's test pipeline when both are the run's own; announces
  the split and its size. ValueError names the flag of a bad split or batch size.
  """
  batch_size = batch_size or config.batch_size
  devices = experiment.mesh.devices.size
  if batch_size % devices or batch_size % jax.process_count():
    multiple = max(devices, jax.process_count())
    raise ValueError(f"--batch-size {batch_size} is not divisible by the {devices} devices "
                     f"and {jax.process_count()} processes; use a multiple of {multiple}.")
  if split == config.data.eval_split and batch_size == config.batch_size:
    pipeline = experiment.test_data
  else:
    try:
      pipeline = data.create_dataset(
          config.data, split, batch_size=batch_size // jax.process_count(), seed=config.seed,
          shard_index=jax.process_index(), shard_count=jax.process_count(), train=False)
    except ValueError as e:
      raise ValueError(f"--split {split!r}: {one_line(e)}") from None
  loop.announce(f"split {split!r}: {pipeline.num_examples:,} examples, "
                f"{pipeline.steps_per_epoch} batches of {batch_size}")
  return pipeline


# --- Reports ----------------------------------------------------------------------------------


def pyplot():
  """``matplotlib.pyplot`` on the file-only Agg backend, imported when a command first draws."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def write_report(table: str, out: pathlib.Path | None, plot_path: pathlib.Path | None = None,
                 plot_fn: Callable | None = None) -> None:
  """Prints a Markdown table, writes it to ``out`` and draws ``plot_fn(plot_path)`` if given."""
  print(table)
  if out:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
  if plot_path:
    plot_fn(plot_path)


def run_command(compute: Callable[[], Any]) -> tuple[int, Any]:
  """(exit status, ``compute()``) with quiet logs; a ValueError / OSError is one line, status 2.

  Sets snnjax's XLA flags and compilation cache first (:func:`snnjax.xla_flags.apply`,
  :func:`snnjax.compilation_cache.enable`), as train.py does.
  """
  xla_flags.apply()
  compilation_cache.enable()
  with quiet_logs():
    try:
      return 0, compute()
    except (ValueError, OSError) as e:
      print(f"error: {one_line(e)}", file=sys.stderr)
      return 2, None


def report_main(compute: Callable[[], dict], format_report: Callable[[dict], str],
                plot: Callable | None, out: pathlib.Path | None,
                plot_path: pathlib.Path | None = None) -> int:
  """The command-line tail of a report on a trained run; returns the exit status.

  ``compute()`` gives {"config", "step", "results", ...} (a ValueError / OSError
  is one line on stderr, exit status 2). Process 0 prints
  ``format_report(result)``, writes it to ``out``, and draws
  ``plot(results, plot_path, title=...)`` if asked.
  """
  status, result = run_command(compute)
  if status or jax.process_index() != 0:
    return status
  plot_title = f"{result['config'].model.name}, step {result['step']}"
  write_report(format_report(result), out, plot_path,
               lambda path: plot(result["results"], path, title=plot_title))
  return 0


# --- evaluate ---------------------------------------------------------------------------------


def evaluate_workdir(workdir: str | pathlib.Path, which: str = "best", split: str | None = None,
                     batch_size: int | None = None) -> dict:
  """Restores a checkpoint of ``workdir`` and evaluates it; returns metrics and the energy report.

  The energy report is recorded on the split's first batch and charged at the
  firing rates measured over the whole split (:func:`snnjax.energy.at_rates`).
  """
  config, experiment, state, step = restore_run(workdir, which)
  split = split or config.data.eval_split
  pipeline = split_pipeline(config, experiment, split, batch_size)
  eval_step = loop.LazyCompiled("eval step", loop.compiled_eval_step(experiment))
  results = evaluate_pass(eval_step, state, pipeline.dataset, pipeline.steps_per_epoch,
                          experiment.mesh, "evaluation")
  with phase("recording every layer on one batch for the energy estimate"):
    sample = next(iter(pipeline.dataset))
    calls = energy.record_layers(experiment.model, steps.model_variables(state),
                                 steps.encoded_input(sample["image"], experiment.model,
                                                     config.data.encoding),
                                 T=config.model.T, batch_size=sample["label"].shape[0],
                                 train=False)
  report = energy.estimate(energy.at_rates(calls, firing_rates(results)))
  return {"step": step, "config": config, "split": split, "metrics": results,
          "energy": report, "feeds": energy.neuron_feeds(calls)}


def firing_rates(metrics: Mapping[str, float]) -> dict[str, float]:
  """{neuron path: firing rate} from evaluation metrics ("firing_rate/<path>" keys)."""
  prefix = "firing_rate/"
  return {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def format_evaluation(result: Mapping[str, Any]) -> str:
  """Accuracy, the firing-rate list (neuron -> the layers it feeds) and the energy table."""
  m = result["metrics"]
  rates = firing_rates(m)
  width = max([len("neuron"), *map(len, rates)])
  lines = [f"checkpoint step {result['step']}: test accuracy {m['test_accuracy']:.4f}, "
           f"test loss {m['test_loss']:.4f} (split {result['split']!r})", "",
           "firing rates (spikes per neuron per time step, over the split):",
           f"  {'neuron':{width}s}  rate    feeds"]
  for name, rate in rates.items():
    feeds = ", ".join(result["feeds"].get(name, [])) or "-"
    lines.append(f"  {name:{width}s}  {rate:.4f}  {feeds}")
  lines += ["", "energy per image (rate: the firing rate of the neuron each layer reads):",
            energy.format_report(result["energy"])]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = command_parser("evaluate", __doc__).parse_args(argv)
  return report_main(
      lambda: evaluate_workdir(args.workdir, args.checkpoint, args.split, args.batch_size),
      format_evaluation, None, args.out)


if __name__ == "__main__":
  sys.exit(main())
