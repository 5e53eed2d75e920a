"""scripts/ablations.py: the statistics, and the driver end to end on a tiny two-cell grid."""

import json
import math
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import stats

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import ablations  # noqa: E402

TINY_FLAGS = (
    "--config.model.T=2", "--config.model.width=0.0625", "--config.sml.head_channels=8",
    "--config.data.source=synthetic", "--config.data.synthetic.shape=(8, 8, 1)",
    "--config.data.synthetic.num_train_examples=128",
    "--config.data.synthetic.num_eval_examples=64", "--config.optimizer.warmup_epochs=0.0")

TINY_STUDY = ablations.Study(
    "tiny", "Two cells of a tiny VGG-small on synthetic images", "configs/fmnist_vgg_sml.py",
    {"no_sml": ("no head", ("--config.sml.enabled=False",)), "sml": ("SML head", ())},
    (("sml", "no_sml"),), {"cpu": (3, 2, TINY_FLAGS)}, claim="the driver runs",
    extras=("noise",), batch_size=16, train_examples=128)


def test_paired_difference_is_the_paired_t_interval():
  cell = {0: 0.81, 1: 0.84, 2: 0.80, 3: 0.86}
  reference = {0: 0.80, 1: 0.80, 2: 0.81, 3: 0.83, 4: 0.99}   # seed 4 has no partner
  out = ablations.paired_difference(cell, reference)
  a, b = [cell[s] for s in range(4)], [reference[s] for s in range(4)]
  expected = stats.ttest_rel(a, b).confidence_interval(0.95)
  assert out["n"] == 4 and out["seeds"] == [0, 1, 2, 3]
  assert out["mean"] == pytest.approx(np.mean(np.subtract(a, b)))
  assert out["sd"] == pytest.approx(np.std(np.subtract(a, b), ddof=1))
  assert out["ci"] == pytest.approx([expected.low, expected.high])
  assert out["wins"] == 3
  one = ablations.paired_difference({0: 0.5}, {0: 0.4})
  assert one["n"] == 1 and math.isnan(one["ci"][0])
  assert ablations.paired_difference({0: 0.5}, {1: 0.4}) == {"n": 0}


def test_mean_std_is_the_sample_standard_deviation():
  assert ablations.mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
  assert ablations.mean_std([3.0]) == (3.0, 0.0)


def test_every_study_has_its_pairs_and_presets_among_its_cells():
  for study in ablations.STUDIES.values():
    for cell, reference in study.pairs:
      assert cell in study.cells and reference in study.cells, (study.name, cell, reference)
    assert set(study.presets) == {"cpu", "gpu"}, study.name
    assert all(seeds >= 3 for _, seeds, _ in study.presets.values()), study.name
    assert set(study.probe_cells) <= set(study.cells)


def test_every_preset_schedules_at_least_its_steps():
  """train.py's schedule has ceil(num_epochs * floor(N / B)) steps; a shorter one would stop
  the run before the final evaluation the driver waits for (3000 steps of 64: 2999)."""
  for study in ablations.STUDIES.values():
    for steps, _, _ in study.presets.values():
      epochs = ablations.schedule_epochs(steps, study.batch_size, study.train_examples)
      scheduled = math.ceil(epochs * (study.train_examples // study.batch_size))
      assert steps <= scheduled <= steps + 1, (study.name, steps, epochs)
  assert ablations.schedule_epochs(937, 64, 60000) == 937 * 64 / 60000   # unchanged where it fits


def test_the_driver_trains_a_two_cell_grid_resumably_and_reports_it(tmp_path, monkeypatch,
                                                                    capsys):
  monkeypatch.setitem(ablations.STUDIES, "tiny", TINY_STUDY)
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
  out, root = tmp_path / "out", tmp_path / "runs"
  argv = ["--study", "tiny", "--workdir-root", str(root), "--out-dir", str(out)]
  assert ablations.main(argv) == 0

  results = json.loads((out / "tiny.json").read_text())
  assert len(results["runs"]) == 4 and {(r["cell"], r["seed"]) for r in results["runs"]} == {
      (c, s) for c in ("no_sml", "sml") for s in (0, 1)}
  for run in results["runs"]:
    assert 0.0 <= run["test_accuracy"] <= 1.0
    assert "--config.max_steps=3" in run["command"] and f"--config.seed={run['seed']}" in \
        run["command"]
    evals = [json.loads(line) for line in open(pathlib.Path(run["workdir"]) / "metrics.jsonl")
             if '"eval"' in line]
    assert evals[-1]["step"] == 3 and evals[-1]["test_accuracy"] == run["test_accuracy"]
  acc = {(r["cell"], r["seed"]): r["test_accuracy"] for r in results["runs"]}
  pair = results["summary"]["pairs"][0]
  assert pair["diffs"] == pytest.approx([acc["sml", s] - acc["no_sml", s] for s in (0, 1)])
  cell = results["summary"]["cells"]["sml"]
  assert cell["mean"] == pytest.approx((acc["sml", 0] + acc["sml", 1]) / 2)
  noise = results["noise"]["cells"]["sml"]
  assert set(noise) == {"gaussian", "salt_pepper"}
  assert noise["gaussian"]["0"]["mean"] == pytest.approx(cell["mean"])   # strength 0 = clean

  table = (out / "tiny.md").read_text()
  assert f"| SML head | no head | 2 | {100 * pair['mean']:+.2f} |" in table
  assert "Accuracy under input noise" in table
  assert "## Training loss at the end (has it levelled off?)" in table
  assert table.count("| SML head | ") == 3    # accuracy, paired difference, training loss
  for png in ("tiny.png", "tiny_noise.png"):
    pixels = np.asarray(Image.open(out / png).convert("L"))
    assert pixels.std() > 0, png

  # A rerun trains nothing: every run is read back.
  metrics = {r["workdir"]: (pathlib.Path(r["workdir"]) / "metrics.jsonl").read_text()
             for r in results["runs"]}
  capsys.readouterr()
  assert ablations.main(argv) == 0
  assert capsys.readouterr().out.count("finished before") == 4
  assert all((pathlib.Path(w) / "metrics.jsonl").read_text() == m for w, m in metrics.items())

  # Another budget in the same folders is refused, and nothing there changes.
  assert ablations.main(argv + ["--steps", "4"]) == 2
  err = capsys.readouterr().err
  assert "holds a run of another command" in err and "--workdir-root" in err
  assert all((pathlib.Path(w) / "metrics.jsonl").read_text() == m for w, m in metrics.items())


def test_an_unknown_cell_is_one_line_and_exit_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    ablations.main(["--study", "sml", "--cells", "sml,nosml"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "unknown cell 'nosml'" in err and "no_sml" in err


def test_tail_change_compares_the_last_tenth_with_the_tenth_before():
  falling = [(s, 2.0 - s / 100) for s in range(10, 101, 10)]   # 1.9, 1.8, ..., 1.0
  assert ablations.tail_change(falling) == pytest.approx(1.0 / 1.1 - 1)
  flat = [(s, 0.5) for s in range(25, 3001, 25)]
  assert ablations.tail_change(flat) == 0.0
  assert ablations.tail_change([(100, 1.0)]) is None       # nothing in the tenth before
  assert ablations.tail_change([]) is None
