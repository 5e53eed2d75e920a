"""Evaluates a trained run: python -m snnjax.evaluate --workdir DIR [--checkpoint best|latest].

Restores the best (or latest) checkpoint of WORKDIR, runs jitted evaluation of
the SNN alone (no SML heads) on the test split, and prints test accuracy, every
neuron layer's firing rate and the energy table of snnjax.energy.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax

from snnjax import energy
from snnjax.train import checkpoint, loop, steps
from snnjax.train import config as config_lib


def restore_run(workdir: str | pathlib.Path, which: str = "best"):
  """(config, experiment, state, step) of a trained WORKDIR's best or latest checkpoint.

  A damaged checkpoint (unreadable or failing its checksums) is skipped with a
  warning naming its step: "best" falls back to the next best one, then to the
  newest readable one; "latest" to the previous one.
  """
  if which not in ("best", "latest"):
    raise ValueError(f"which={which!r}; choose 'best' or 'latest'.")
  workdir = pathlib.Path(workdir)
  checkpoint.check_checkpoint_dir(workdir / "checkpoints", require_checkpoint=True)
  config = config_lib.load_saved_config(workdir)
  exp = loop.prepare(config, workdir)
  try:
    restore = (exp.checkpointer.restore_best if which == "best"
               else exp.checkpointer.restore_latest)
    restored = restore(exp.template)
  finally:
    exp.checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no checkpoint.")
  state, _, step = restored
  return config, exp, state, step


def write_report(table: str, out: pathlib.Path | None, plot_path: pathlib.Path | None,
                 plot_fn) -> None:
  """Prints a Markdown table, writes it to ``out`` and draws ``plot_fn(plot_path)`` if given."""
  print(table)
  if out:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
  if plot_path:
    plot_fn(plot_path)


def report_main(compute, title, format_table, plot, out: pathlib.Path | None,
                plot_path: pathlib.Path | None) -> int:
  """The command-line tail of a report on a trained run; returns the exit status.

  ``compute()`` gives {"config", "step", "results"}; a ValueError / OSError is
  printed and exits 2. Process 0 prints ``format_table(results, title(result))``,
  writes it to ``out`` and ``plot(results, plot_path, title=...)`` if asked.
  """
  try:
    result = compute()
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if jax.process_index() != 0:
    return 0
  plot_title = f"{result['config'].model.name}, step {result['step']}"
  write_report(format_table(result["results"], title(result)), out, plot_path,
               lambda path: plot(result["results"], path, title=plot_title))
  return 0


def evaluate_workdir(workdir: str | pathlib.Path, which: str = "best") -> dict:
  """Restores a checkpoint of ``workdir`` and evaluates it; returns metrics and the energy report."""
  config, exp, state, step = restore_run(workdir, which)
  results = loop.evaluate(loop.compiled_eval_step(exp), state, exp.test_data, exp.mesh)
  sample = next(iter(exp.test_data.dataset))
  variables = {"params": state.params, "batch_stats": state.batch_stats, "surrogate": state.surrogate}
  report = energy.energy_report(exp.model, variables, steps.model_input(sample["image"]),
                                T=config.model.T, batch_size=sample["label"].shape[0],
                                train=False)
  return {"step": step, "metrics": results, "energy": report}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, type=pathlib.Path)
  parser.add_argument("--checkpoint", default="best", choices=("best", "latest"))
  args = parser.parse_args(argv)
  try:
    result = evaluate_workdir(args.workdir, args.checkpoint)
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if jax.process_index() == 0:
    m = result["metrics"]
    print(f"checkpoint step {result['step']}: test accuracy {m['test_accuracy']:.4f}, "
          f"test loss {m['test_loss']:.4f}")
    print("\nfiring rates (spikes per neuron per time step):")
    for name, rate in m.items():
      if name.startswith("firing_rate/"):
        print(f"  {name.removeprefix('firing_rate/'):40s} {rate:.4f}")
    print("\n" + energy.format_report(result["energy"]))
  return 0


if __name__ == "__main__":
  sys.exit(main())
