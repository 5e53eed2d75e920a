"""python -m snnjax.data.prepare: raw files in their original formats -> packed event splits."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from snnjax.data import events, prepare, raw_events
from test_raw_events import write_cifar10dvs, write_gesture, write_gesture_labels, write_nmnist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cifar10dvs_raw(root, per_class=3):
  for c, name in enumerate(("airplane", "automobile")):
    os.makedirs(root / name)
    for i in range(per_class):
      write_cifar10dvs(root / name / f"cifar10_{name}_{i}.aedat", n=50 + i, seed=10 * c + i)
  return root


def _events_equal(a, b):
  return all(np.array_equal(a[k], b[k]) for k in "txyp")


def test_cifar10dvs_prepare_then_read_through_the_event_source(tmp_path):
  raw = _cifar10dvs_raw(tmp_path / "raw")
  out = tmp_path / "out"
  manifest = prepare.prepare("cifar10dvs", str(raw), str(out), workers=2)
  assert manifest["samples"] == 6 and not manifest["failed"]
  assert json.loads((out / prepare.MANIFEST).read_text())["dataset"] == "cifar10dvs"
  assert not (tmp_path / "out.partial").exists()
  assert sorted(p.name for p in out.iterdir()) == ["all", prepare.MANIFEST]  # samples/ removed
  source = events.open_event_source(str(out), "train", train_fraction=0.5)
  assert isinstance(source, events.PackedEventSource)
  assert source.class_names == ("airplane", "automobile") and len(source) == 4
  assert source.names == ["airplane/cifar10_airplane_0.npz", "airplane/cifar10_airplane_1.npz",
                          "automobile/cifar10_automobile_0.npz",
                          "automobile/cifar10_automobile_1.npz"]
  sample = source[0]
  expected = raw_events.read_cifar10dvs_aedat(raw / "airplane" / "cifar10_airplane_0.aedat")
  assert _events_equal(sample, expected) and sample["label"] == 0


def test_gesture_prepare_makes_one_sample_per_labelled_interval(tmp_path):
  raw = tmp_path / "DvsGesture"
  raw.mkdir()
  for i, split in enumerate(("train", "test")):
    path, t_end = write_gesture(raw / f"user0{i + 1}_fluorescent.aedat", seed=i)
    write_gesture_labels(raw / f"user0{i + 1}_fluorescent_labels.csv", t_end, seed=i)
    (raw / f"trials_to_{split}.txt").write_text(f"user0{i + 1}_fluorescent.aedat\n")
  out = tmp_path / "out"
  prepare.prepare("dvs128_gesture", str(raw), str(out), workers=1)
  recording = raw_events.read_gesture_aedat(raw / "user01_fluorescent.aedat")
  labels = raw_events.read_gesture_labels(raw / "user01_fluorescent_labels.csv")
  expected = raw_events.split_gesture_recording(recording, labels)
  train = events.open_event_source(str(out), "train")
  assert len(train) == len(expected) == 5
  by_file = {name: i for i, name in enumerate(train.names)}
  for label, k, sample in expected:
    index = by_file[os.path.join(f"{label:02d}", f"user01_fluorescent_{k}.npz")]
    assert _events_equal(train[index], sample)
    assert train.class_names[train[index]["label"]] == f"{label:02d}"
  assert len(events.open_event_source(str(out), "test")) == 5


def test_nmnist_prepare_keeps_the_train_test_folders(tmp_path):
  raw = tmp_path / "NMNIST"
  for folder in ("Train", "Test"):
    for digit in ("0", "7"):
      os.makedirs(raw / folder / digit)
      write_nmnist(raw / folder / digit / "00001.bin", n=40, seed=int(digit))
  out = tmp_path / "out"
  prepare.prepare("nmnist", str(raw), str(out), workers=1)
  test = events.open_event_source(str(out), "test")
  assert test.class_names == ("0", "7") and len(test) == 2
  assert _events_equal(test[1], raw_events.read_nmnist_bin(raw / "Test" / "7" / "00001.bin"))


def test_a_bad_file_is_named_and_the_rest_converted_but_not_finished(tmp_path, capsys):
  raw = _cifar10dvs_raw(tmp_path / "raw")
  (raw / "airplane" / "broken.aedat").write_bytes(b"")
  out = tmp_path / "out"
  manifest = prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
  assert manifest["failed"] == [str(raw / "airplane" / "broken.aedat")]
  assert "broken.aedat" in capsys.readouterr().out
  assert not out.exists()  # a training run cannot mistake it for a finished conversion
  assert len(list((tmp_path / "out.partial" / prepare.SAMPLES).rglob("*.npz"))) == 6
  (raw / "airplane" / "broken.aedat").unlink()
  manifest = prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
  assert "6 done earlier" in capsys.readouterr().out
  assert not manifest["failed"] and (out / prepare.MANIFEST).is_file()


def test_rerun_on_a_finished_folder_changes_nothing(tmp_path, capsys):
  raw = _cifar10dvs_raw(tmp_path / "raw")
  out = tmp_path / "out"
  prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
  before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
  prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
  assert "nothing to do" in capsys.readouterr().out
  assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_kept_samples_read_the_same_as_the_pack(tmp_path):
  raw = _cifar10dvs_raw(tmp_path / "raw")
  out = tmp_path / "out"
  prepare.prepare("cifar10dvs", str(raw), str(out), workers=1, keep_samples=True)
  packed = events.open_event_source(str(out), "test", train_fraction=0.5)
  per_sample = events.EventFolderSource(str(out / prepare.SAMPLES), "test", train_fraction=0.5)
  assert len(packed) == len(per_sample) == 2
  for i in range(2):
    assert _events_equal(packed[i], per_sample[i]) and packed[i]["label"] == per_sample.labels[i]
    assert all(packed[i][k].dtype == per_sample[i][k].dtype for k in "txyp")


def test_packed_splits_feed_a_pipeline_with_grain_workers(tmp_path):
  from snnjax import data
  raw = _cifar10dvs_raw(tmp_path / "raw", per_class=4)
  out = tmp_path / "out"
  prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
  c = data.default_config()
  c.update(dict(source="events", folder=str(out), worker_count=1))
  c.augment.crop_padding = 0
  c.events.update(dict(num_frames=2, train_fraction=0.5))
  train = data.create_dataset(c, "train", batch_size=2, seed=0, shard_index=0, shard_count=1)
  batch = next(train)
  assert batch["image"].shape == (2, 2, 128, 128, 2)
  counts = sorted(batch["image"].reshape(2, -1).sum(1).astype(int).tolist())
  assert set(counts) <= {50, 51, 52, 53}  # each sample's events, every one counted once


def test_a_damaged_pack_is_named(tmp_path):
  raw = _cifar10dvs_raw(tmp_path / "raw")
  out = tmp_path / "out"
  prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
  x = out / "all" / "x.npy"
  x.write_bytes(x.read_bytes()[:-10])
  with pytest.raises(ValueError, match=r"packed event split .*all: x.npy unreadable .*rerun"):
    events.open_event_source(str(out), "train")
  with pytest.raises(ValueError, match=r"split 'validation' not found .*\['all'\]"):
    events.open_event_source(str(out), "validation")


def test_an_interrupted_clean_up_is_finished_by_a_rerun(tmp_path):
  raw = _cifar10dvs_raw(tmp_path / "raw")
  out = tmp_path / "out"
  prepare.prepare("cifar10dvs", str(raw), str(out), workers=1, keep_samples=True)
  manifest = json.loads((out / prepare.MANIFEST).read_text())
  (out / prepare.MANIFEST).write_text(json.dumps({**manifest, "samples_kept": False}))
  prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
  assert not (out / prepare.SAMPLES).exists() and len(events.open_event_source(str(out), "train"))


@pytest.mark.parametrize("case", ["unknown dataset", "wrong layout", "other dataset in out",
                                  "foreign out folder", "missing labels csv"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
  raw = _cifar10dvs_raw(tmp_path / "raw")
  out = tmp_path / "out"
  dataset, expected = "cifar10dvs", ""
  if case == "unknown dataset":
    dataset, expected = "cifar11dvs", "unknown dataset"
  elif case == "wrong layout":
    dataset, expected = "nmnist", "Train/ folder not found"
  elif case == "other dataset in out":
    prepare.prepare("cifar10dvs", str(raw), str(out), workers=1)
    dataset, expected = "nmnist", "holds a prepared 'cifar10dvs' dataset"
  elif case == "foreign out folder":
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    expected = "is not a folder this command prepared"
  elif case == "missing labels csv":
    raw = tmp_path / "DvsGesture"
    raw.mkdir()
    write_gesture(raw / "user01_led.aedat")
    (raw / "trials_to_train.txt").write_text("user01_led.aedat\n")
    (raw / "trials_to_test.txt").write_text("user01_led.aedat\n")
    dataset, expected = "dvs128_gesture", "labels csv not found"
  result = subprocess.run([sys.executable, "-m", "snnjax.data.prepare", dataset, "--raw", str(raw),
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
  if case == "foreign out folder":
    assert (out / "mine.txt").read_text() == "keep me"


def test_two_commands_prepare_and_train_nmnist(tmp_path):
  """The README's two commands for an event dataset: prepare the original files, then train."""
  raw = tmp_path / "NMNIST"
  for folder in ("Train", "Test"):
    for digit in range(10):
      os.makedirs(raw / folder / str(digit))
      write_nmnist(raw / folder / str(digit) / "00001.bin", n=200, seed=digit)
  out = tmp_path / "nmnist_events"
  subprocess.run([sys.executable, "-m", "snnjax.data.prepare", "nmnist", "--raw", str(raw),
                  "--out", str(out)], check=True, cwd=REPO, capture_output=True, timeout=300)
  result = subprocess.run(
      [sys.executable, "train.py", "--config", "configs/nmnist_sml.py", "--workdir",
       str(tmp_path / "run"), f"--config.data.folder={out}", "--config.model.T=2",
       "--config.data.events.num_frames=2", "--config.batch_size=8", "--config.max_steps=2",
       "--config.progress_bar=False"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "final test accuracy" in result.stdout
  records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  assert any("test_accuracy" in r for r in records)
