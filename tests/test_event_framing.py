"""Framing into T frames and the train/test split (snnjax.data.events) against SpikingJelly 2.0.

Compared functions of ``spikingjelly.datasets.utils``:
  * ``integrate_events_by_fixed_frames_number`` (whose segment indices are
    ``cal_fixed_frames_number_segment_index``) with split_by 'number' and
    'time', and ``integrate_events_file_to_frames_file_by_fixed_frames_number``
    (what its datasets call for ``data_type='frame'``) on an events_np file;
  * ``split_to_train_test_set(0.9, dataset, num_classes, random_split=False)``.
Frames must be equal exactly: SpikingJelly's [T, 2, H, W] (channel 0 = p == 0,
channel 1 = p == 1) is snnjax's [T, H, W, 2] with the same channel order.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from snnjax.data import events
from test_raw_events import sj  # noqa: F401  # the fixture: SpikingJelly's dataset modules


@pytest.fixture(scope="module")
def sj_utils(sj):  # pylint: disable=redefined-outer-name
  """``spikingjelly.datasets.utils`` (imported with stubs for absent optional packages)."""
  return sj["utils"]


def random_stream(n, height, width, seed, span=None, t_dtype=np.int64):
  """n events in time order with many tied timestamps; t starts at a random offset.

  ``span``: the timestamps are drawn from [t0, t0 + span] (a short span forces
  ties on the window boundaries); by default increments 0..3 (about a quarter
  of them 0, i.e. ties).
  """
  rng = np.random.default_rng(seed)
  t0 = int(rng.integers(0, 10**6))
  if span is None:
    t = t0 + np.cumsum(rng.integers(0, 4, n))
  else:
    t = t0 + np.sort(rng.integers(0, span + 1, n))
  x = rng.integers(0, width, n)
  y = rng.integers(0, height, n)
  p = rng.integers(0, 2, n)
  return {"t": t.astype(t_dtype), "x": x, "y": y, "p": p}


def sj_frames(sj_utils, ev, split_by, T, height, width):
  """SpikingJelly's frames, moved to snnjax's [T, H, W, 2]."""
  frames = sj_utils.integrate_events_by_fixed_frames_number(ev, split_by, T, height, width)
  assert frames.shape == (T, 2, height, width)
  return frames.transpose(0, 2, 3, 1)


def ours(ev, split_by, T, height, width):
  return events.integrate_events(ev["t"], ev["x"], ev["y"], ev["p"], num_frames=T,
                                 height=height, width=width, split_by=split_by)


SENSORS = ((128, 128), (34, 34))
FRAMES = (2, 4, 10)


@pytest.mark.parametrize("sensor", SENSORS)
@pytest.mark.parametrize("T", FRAMES)
@pytest.mark.parametrize("n", (0, 1, 7, 10, 103, 1000, 4099))
def test_split_by_number_equals_spikingjelly(sj_utils, sensor, T, n):
  h, w = sensor
  ev = random_stream(n, h, w, seed=1000 * T + n)
  a, b = ours(ev, "number", T, h, w), sj_frames(sj_utils, ev, "number", T, h, w)
  assert a.shape == (T, h, w, 2) and a.dtype == np.float32
  assert np.array_equal(a, b)
  assert a.sum() == n
  # The segment boundaries themselves: frame k holds events [j_l[k], j_r[k]).
  if n:
    j_l, j_r = sj_utils.cal_fixed_frames_number_segment_index(ev["t"], "number", T)
    k = events.frame_indices(ev["t"], T, "number")
    expected = np.concatenate([np.full(r - l, i) for i, (l, r) in enumerate(zip(j_l, j_r))])
    assert np.array_equal(k, expected)


# (n, span): dense streams with increments 0..3 (span None), and short spans with
# many events per timestamp so that ties fall exactly on window starts.
TIME_CASES = ((103, None), (1000, None), (4099, None), (997, 40), (500, 21), (64, 10))


@pytest.mark.parametrize("t_dtype", (np.int64, np.dtype(">u4"), np.float64))
@pytest.mark.parametrize("sensor", SENSORS)
@pytest.mark.parametrize("T", FRAMES)
@pytest.mark.parametrize("n,span", TIME_CASES)
def test_split_by_time_equals_spikingjelly(sj_utils, sensor, T, n, span, t_dtype):
  h, w = sensor
  ev = random_stream(n, h, w, seed=7 * T + n, span=span, t_dtype=t_dtype)
  if span is not None and span // T == 0:
    pytest.skip("window length 0: SpikingJelly raises (see the test below)")
  a, b = ours(ev, "time", T, h, w), sj_frames(sj_utils, ev, "time", T, h, w)
  assert np.array_equal(a, b)
  assert a.sum() == n
  j_l, j_r = sj_utils.cal_fixed_frames_number_segment_index(ev["t"], "time", T)
  k = events.frame_indices(ev["t"], T, "time")
  expected = np.concatenate([np.full(r - l, i) for i, (l, r) in enumerate(zip(j_l, j_r))])
  assert np.array_equal(k, expected)


def test_split_by_time_uses_floored_windows_and_a_longer_last_frame(sj_utils):
  # t = 0..99 in 4 frames: dt = 99 // 4 = 24, so 24, 24, 24 and 28 events (not 25 each).
  t = np.arange(100)
  ev = {"t": t, "x": np.zeros(100, int), "y": np.zeros(100, int), "p": (t >= 50).astype(int)}
  a = ours(ev, "time", 4, 1, 1)
  assert np.array_equal(a, sj_frames(sj_utils, ev, "time", 4, 1, 1))
  np.testing.assert_array_equal(a[:, 0, 0, :], [[24, 0], [24, 0], [2, 22], [0, 28]])


def test_where_spikingjelly_raises_snnjax_gives_empty_or_proportional_frames(sj_utils):
  # A gap leaves window 1 of 3 empty: SpikingJelly indexes an empty mask and raises.
  t = np.array([0, 1, 2, 3, 25, 28, 30])
  ev = {"t": t, "x": np.zeros(7, int), "y": np.zeros(7, int), "p": np.ones(7, int)}
  with pytest.raises(IndexError):
    sj_utils.integrate_events_by_fixed_frames_number(ev, "time", 3, 1, 1)
  np.testing.assert_array_equal(ours(ev, "time", 3, 1, 1)[:, 0, 0, 1], [4, 0, 3])
  # Span shorter than T (window length 0): SpikingJelly raises; snnjax splits proportionally.
  ev["t"] = np.array([0, 0, 1, 1, 2, 2, 3])
  with pytest.raises(IndexError):
    sj_utils.integrate_events_by_fixed_frames_number(ev, "time", 10, 1, 1)
  np.testing.assert_array_equal(events.frame_indices(ev["t"], 10, "time"), [0, 0, 3, 3, 6, 6, 9])
  # A single timestamp: all events in frame 0.
  np.testing.assert_array_equal(events.frame_indices(np.full(5, 7), 4, "time"), np.zeros(5))


@pytest.mark.parametrize("p_kind", ("int", "bool", "uint8"))
def test_polarity_channels_match(sj_utils, p_kind):
  ev = random_stream(501, 34, 34, seed=3)
  ev["p"] = ev["p"].astype({"int": np.int64, "bool": bool, "uint8": np.uint8}[p_kind])
  for split_by in events.SPLIT_BY:
    a, b = ours(ev, split_by, 4, 34, 34), sj_frames(sj_utils, ev, split_by, 4, 34, 34)
    assert np.array_equal(a, b)
    assert a[..., 1].sum() == np.count_nonzero(ev["p"])   # channel 1 = ON (p == 1)


@pytest.mark.parametrize("split_by", events.SPLIT_BY)
def test_frames_file_equals_spikingjelly_frames_file(sj_utils, tmp_path, split_by):
  """From an events_np .npz: SpikingJelly's frames file vs snnjax's folder source + framing."""
  h, w, T = 128, 128, 10
  folder = tmp_path / "events_np" / "train" / "cls"
  folder.mkdir(parents=True)
  ev = random_stream(3001, h, w, seed=11)
  path = folder / "sample.npz"
  np.savez(path, **ev)
  out = tmp_path / "frames"
  out.mkdir()
  sj_utils.integrate_events_file_to_frames_file_by_fixed_frames_number(
      np.load, str(path), str(out), split_by, T, h, w)
  theirs = np.load(out / "sample.npz")["frames"]
  example = events.EventFolderSource(str(tmp_path), "train")[0]
  mine = events.integrate_events(example["t"], example["x"], example["y"], example["p"],
                                 num_frames=T, height=h, width=w, split_by=split_by)
  assert np.array_equal(mine, theirs.transpose(0, 2, 3, 1))


# --- train / test split -------------------------------------------------------------------------


# Files per class: exact multiples of 10 and the counts where ceil and round differ (5, 15, 25).
CLASS_SIZES = (1, 2, 5, 9, 10, 11, 15, 25, 37, 1000)


def _class_folder(tmp_path, sizes, seed=0):
  rng = np.random.default_rng(seed)
  root = tmp_path / "events_np"
  names = [f"class_{i:02d}" for i in range(len(sizes))]
  for name, size in zip(names, sizes):
    (root / name).mkdir(parents=True)
    for i in rng.permutation(size):   # created in random order; names not zero-padded
      (root / name / f"{name}_{i}.npz").touch()   # listed, never read
  return root, names


@pytest.mark.parametrize("fraction", (0.9, 0.8, 0.5))
def test_split_equals_spikingjelly_split_to_train_test_set(sj_utils, tmp_path, fraction):
  root, names = _class_folder(tmp_path, CLASS_SIZES)
  # The dataset order SpikingJelly's DatasetFolder gives: classes in sorted order, each
  # class's files in sorted name order.
  dataset = [(str(root / name / f), label) for label, name in enumerate(names)
             for f in sorted(os.listdir(root / name))]
  train, test = sj_utils.split_to_train_test_set(fraction, dataset, len(names),
                                                 random_split=False)
  sj_train = [dataset[i][0] for i in train.indices]
  sj_test = [dataset[i][0] for i in test.indices]

  per_class = {split: [] for split in ("train", "test")}
  for name in names:
    files = [str(root / name / f) for f in os.listdir(root / name)]
    for split in per_class:
      per_class[split] += events.split_files(files, split, fraction)
  assert per_class["train"] == sj_train and per_class["test"] == sj_test

  source_train = events.EventFolderSource(str(tmp_path), "train", train_fraction=fraction)
  source_test = events.EventFolderSource(str(tmp_path), "test", train_fraction=fraction)
  assert source_train.files == sj_train and source_test.files == sj_test
  assert source_train.labels == [dataset[i][1] for i in train.indices]
  assert source_test.labels == [dataset[i][1] for i in test.indices]
  if fraction == 0.9:   # 5 files: ceil(4.5) = 5 for training, none for testing.
    assert len(events.split_files([f"{i}" for i in range(5)], "train", 0.9)) == 5
