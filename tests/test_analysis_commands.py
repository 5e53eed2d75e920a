"""The analysis commands (evaluate, probe, robustness) as a new user meets them, on a tiny run.

Shared flags and defaults, --help showing every default, progress lines, no third-party
warnings, layer names that agree between tables, and one-line errors with exit status 2.
"""

import logging
import re
import shutil
import subprocess
import sys

import pytest

from snnjax import energy, evaluate, gradient_probe, probe, robustness
from snnjax.train import loop
from test_train import REPO, tiny_config

COMMANDS = {"evaluate": evaluate.main, "probe": probe.main, "robustness": robustness.main}
SHARED_FLAGS = ("--workdir", "--checkpoint", "--split", "--batch-size", "--out")
THIRD_PARTY_NOISE = re.compile(r"WARNING|read_only|read only|absl|orbax|Traceback")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """conv1 -> sn1 -> conv2 -> sn2 -> conv3 -> sn3 -> fc at 1/16 width, T=2, trained 2 steps.

  The depth-experiment net without extra layers (few kernel shapes: the probe compiles
  once per shape), on 8x8 synthetic images.
  """
  path = tmp_path_factory.mktemp("analysis") / "run"
  config = tiny_config(max_steps=2, **{"sml.enabled": False, "model.name": "depth_net"})
  config.model.options = {"depth": 0}
  loop.train_and_evaluate(config, path)
  return path


def run_main(name, argv, capsys):
  """(exit status, stdout, stderr) of ``snnjax.<name>.main(argv)``; argparse exits count."""
  try:
    status = COMMANDS[name](argv)
  except SystemExit as e:
    status = e.code
  out, err = capsys.readouterr()
  return status, out, err


def table_rows(text, header):
  """The cells of each row of the Markdown table whose header starts with ``header``."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(header))
  rows = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
  return rows


# --- Flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_the_shared_flags_and_every_default(name, capsys):
  status, out, _ = run_main(name, ["--help"], capsys)
  assert status == 0
  for flag in SHARED_FLAGS:
    assert flag in out, (flag, out)
  assert re.search(r"--checkpoint \{best,latest\}\s+which checkpoint.*\(default: best\)",
                   " ".join(out.split()))
  options = out[out.index("options:"):]
  entries = re.split(r"\n  (?=-)", options)[1:]   # one entry per flag, its help included
  for entry in entries:
    if entry.startswith("-h"):
      continue
    text = " ".join(entry.split())
    assert "(default: " in text or "(required)" in text, text


def test_every_command_restores_the_best_checkpoint_by_default(monkeypatch, tmp_path, capsys):
  asked = []

  def restore_run(workdir, which="best"):
    asked.append(which)
    raise ValueError("stop here")

  monkeypatch.setattr(evaluate, "restore_run", restore_run)
  monkeypatch.setattr(evaluate, "check_run_dir", lambda w: w)
  monkeypatch.setattr(robustness.config_lib, "load_saved_config", lambda w: tiny_config())
  for name in COMMANDS:
    assert run_main(name, ["--workdir", str(tmp_path)], capsys)[0] == 2
  assert asked == ["best"] * 3


# --- A normal run: progress, quiet, names that agree --------------------------------------------


def test_evaluate_command_prints_progress_no_warnings_and_matching_names(workdir):
  result = subprocess.run([sys.executable, "-m", "snnjax.evaluate", "--workdir", str(workdir)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  assert not THIRD_PARTY_NOISE.search(result.stderr), result.stderr
  lines = result.stdout.splitlines()
  assert re.fullmatch(r"restored checkpoint step 2 \(best, test accuracy [\d.]+ when saved\) "
                      r"from .*checkpoints", lines[0]), lines[0]
  assert [line.split()[0] for line in lines[1:4]] == ["devices", "model", "params"]
  assert lines[1] == "devices   8 x cpu, 1 process; mesh data=8"
  assert lines[4] == "split 'test': 64 examples, 4 batches of 16"
  assert lines[5] == "compiling eval step ..."
  assert re.fullmatch(r"compiled eval step in [\d.]+ s", lines[6]), lines[6]
  assert re.fullmatch(r"evaluation: test accuracy [\d.]+ \([\d.]+ s\)", lines[7]), lines[7]

  # The firing-rate list (neuron, rate, the layers it feeds) and the energy table (layer,
  # "<neuron> spikes", rate) name the same pairs with the same rates.
  listed = {}
  for line in lines[lines.index("  neuron  rate    feeds") + 1:]:
    if not line.strip():
      break
    neuron, rate, feeds = line.split(maxsplit=2)
    listed[neuron] = (rate, feeds.split(", "))
  assert list(listed) == ["sn1", "sn2", "sn3"]
  energy_rows = table_rows(result.stdout, "| layer | kind | input | rate |")[:-1]  # not total
  assert [r[0] for r in energy_rows] == ["conv1", "conv2", "conv3", "fc"]
  assert energy_rows[0][2] == "analog"
  for layer, _, source, rate, *_ in energy_rows[1:]:
    neuron = source.removesuffix(" spikes")
    assert listed[neuron][0] == rate and layer in listed[neuron][1], (layer, source, listed)


def test_probe_names_layers_as_evaluate_does_with_progress_and_no_warnings(workdir, capfd):
  status = probe.main(["--workdir", str(workdir), "--directions", "2", "--batch-size", "8"])
  out, err = capfd.readouterr()
  assert status == 0, out + err
  assert not THIRD_PARTY_NOISE.search(err), err
  lines = out.splitlines()
  assert lines[0].startswith("restored checkpoint step 2 (best, ")
  assert lines[4] == "split 'train': probing on its first 8 of 512 examples (1 batch of 8)"
  assert "probing 4 layers: 1 gradient, then 16 loss evaluations" in out
  assert re.search(r"^probed layer 4/4, fc: [\d.]+ s$", out, re.M), out
  rows = table_rows(out, "| depth | layer | input |")
  assert [(r[1], r[2]) for r in rows] == [("conv1", "analog"), ("conv2", "sn1 spikes"),
                                          ("conv3", "sn2 spikes"), ("fc", "sn3 spikes")]


def test_robustness_evaluates_the_clean_split_once(workdir, monkeypatch, capfd):
  passes = []
  evaluate_split = loop.evaluate

  def counted(eval_step, state, batches, mesh, num_batches=None, progress=False):
    passes.append(type(batches).__name__)
    return evaluate_split(eval_step, state, batches, mesh, num_batches, progress)

  monkeypatch.setattr(loop, "evaluate", counted)
  status = robustness.main(["--workdir", str(workdir), "--gaussian", "0,0.1",
                            "--salt-pepper", "0,0.05"])
  out, err = capfd.readouterr()
  assert status == 0, out + err
  assert not THIRD_PARTY_NOISE.search(err), err
  assert passes[1:] == ["generator", "generator"] and passes[0] != "generator"  # clean: the split
  assert out.count("compiling eval step ...") == 1
  for what in ("clean", "gaussian 0.1", "salt_pepper 0.05"):
    assert re.search(rf"^{what}: test accuracy [\d.]+ \([\d.]+ s\)$", out, re.M), out
  clean = re.search(r"^clean: test accuracy ([\d.]+)", out, re.M)[1]
  rows = {(r[0], r[1]): r[2] for r in table_rows(out, "| noise | strength |")}
  assert rows[("gaussian", "0")] == rows[("salt_pepper", "0")] == f"{100 * float(clean):.2f}"


def test_snnjax_warnings_show_in_its_words_and_third_party_ones_do_not(capfd):
  with evaluate.quiet_logs():
    logging.getLogger("absl").warning("Given directory is read only=/somewhere")
    logging.getLogger("snnjax.train.checkpoint").warning("Checkpoint step 3 is unreadable.")
  assert capfd.readouterr().err == "warning: Checkpoint step 3 is unreadable.\n"
  assert logging.getLogger("absl").level == logging.NOTSET  # restored


# --- Errors: one line, exit status 2, nothing compiled ------------------------------------------


@pytest.fixture
def nothing_compiles(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError("compiled before rejecting a bad flag value")
  for module, name in ((loop, "compiled_eval_step"), (energy, "record_layers"),
                       (gradient_probe, "gradient_probe")):
    monkeypatch.setattr(module, name, fail)


def _without_config(workdir, tmp_path):
  copy = tmp_path / "copied"
  shutil.copytree(workdir / "checkpoints", copy / "checkpoints")
  return copy


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("case, argv, named", [
    ("missing workdir", lambda w, t: ["--workdir", str(t / "no_such_run")], "no_such_run"),
    ("empty folder", lambda w, t: ["--workdir", str(t)], "No checkpoint folder"),
    ("no config.json", lambda w, t: ["--workdir", str(_without_config(w, t))], "config.json"),
    ("unknown checkpoint", lambda w, t: ["--workdir", str(w), "--checkpoint", "bset"], "'bset'"),
    ("batch size", lambda w, t: ["--workdir", str(w), "--batch-size", "-4"], "-4"),
])
def test_bad_flag_values_are_one_line_and_exit_2(name, case, argv, named, workdir, tmp_path,
                                                 nothing_compiles, capsys):
  status, out, err = run_main(name, argv(workdir, tmp_path), capsys)
  assert status == 2, (case, out, err)
  assert len(err.splitlines()) == 1 and err.startswith("error: ") and named in err, err
  assert "Traceback" not in out + err


@pytest.mark.parametrize("argv, named", [
    (["--gaussian", "0,x"], "'0,x' is not a comma-separated list of numbers"),
    (["--salt-pepper", "0,1.5"], "--salt-pepper: salt_pepper strengths [1.5] out of range"),
    (["--batch-size", "12"], "--batch-size 12 is not divisible by the 8 devices"),
])
def test_bad_robustness_values_are_one_line_and_exit_2(argv, named, workdir, nothing_compiles,
                                                       capsys):
  status, _, err = run_main("robustness", ["--workdir", str(workdir), *argv], capsys)
  assert status == 2 and len(err.splitlines()) == 1 and named in err, err
