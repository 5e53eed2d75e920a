"""Raw event-file readers (snnjax.data.raw_events) against SpikingJelly 2.0's own readers.

Small synthetic files in each original binary format are written to tmp_path
and decoded by both; the t, x, y, p arrays must be equal exactly, with equal
dtypes (byte order aside: SpikingJelly's CIFAR10-DVS t is a big-endian view).
"""

from __future__ import annotations

import importlib
import os
import struct
import subprocess
import sys
import types

import numpy as np
import pytest

from snnjax.data import raw_events

KEYS = ("t", "x", "y", "p")


# spikingjelly.datasets imports these at module level, for downloading, image
# transforms and other datasets; the readers compared here use none of them.
_OPTIONAL = ("torchvision", "torchvision.transforms", "torchvision.datasets",
             "torchvision.datasets.utils", "torchaudio", "h5py")


def _stub_module(name):
  """A module whose every attribute is a class that raises when instantiated."""
  mod = types.ModuleType(name)
  mod.__path__ = []    # a package with no submodules on disk

  def getattr_(attr):
    if attr.startswith("__"):
      raise AttributeError(attr)
    def unavailable(*args, **kwargs):
      raise RuntimeError(f"{name}.{attr} is a test stub ({name} is not installed).")
    return type(attr, (), {"__init__": unavailable})
  mod.__getattr__ = getattr_
  return mod


@pytest.fixture(scope="module")
def sj():
  """SpikingJelly's dataset modules (imports torch, so only once).

  Where torchvision / torchaudio / h5py are not installed (the dev extras hold
  only spikingjelly and torch), stubs stand in for them during the import; no
  function that would use them is called, and nothing is downloaded.
  """
  pytest.importorskip("spikingjelly")
  pytest.importorskip("torch")
  stubbed = []
  for name in _OPTIONAL:
    try:
      importlib.import_module(name)
    except ImportError:
      sys.modules[name] = _stub_module(name)
      stubbed.append(name)
  try:
    from spikingjelly.datasets import cifar10_dvs, dvs128_gesture, utils
  finally:
    for name in stubbed:
      del sys.modules[name]
  return {"cifar10_dvs": cifar10_dvs, "dvs128_gesture": dvs128_gesture, "utils": utils}


def assert_same_events(ours, theirs):
  assert set(ours) == set(KEYS)
  n = ours["t"].shape[0]
  for k in KEYS:
    a, b = ours[k], np.asarray(theirs[k])
    assert a.ndim == 1 and a.shape[0] == n, k
    assert a.dtype == b.dtype.newbyteorder("="), (k, a.dtype, b.dtype)
    assert np.array_equal(a, b), k


# ----------------------------------------------------------------------------- writers

AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n"
                 b"# This is a raw AE data file - do not edit\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total), "
                 b"repeated for each event\r\n"
                 b"# Timestamps tick is 1 us\r\n"
                 b"# created Mon Jan 01 00:00:00 CST 2016\r\n")


def write_cifar10dvs(path, n=300, seed=0):
  rng = np.random.default_rng(seed)
  row = rng.integers(0, 128, n, dtype=np.uint32)
  col = rng.integers(0, 128, n, dtype=np.uint32)
  q = rng.integers(0, 2, n, dtype=np.uint32)
  addr = (row << 8) | (col << 1) | q
  # A few records with the event-type bit 31 and unused bits set: kept, not decoded.
  addr[rng.choice(n, 5, replace=False)] |= np.uint32(0x80010000)
  t = np.sort(rng.integers(0, 2**31, n, dtype=np.uint32))
  body = np.stack([addr, t], 1).astype(">u4").tobytes()
  with open(path, "wb") as f:
    f.write(AEDAT2_HEADER + body)
  return path


AEDAT3_HEADER = (b"#!AER-DAT3.1\r\n"
                 b"#Format: RAW\r\n"
                 b"#Source 1: DVS128\r\n"
                 b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n"
                 b"#!END-HEADER\r\n")


def _packet(e_type, e_size, overflow, events: bytes, capacity, number):
  header = struct.pack("<HhIIIIII", e_type, 1, e_size, 4, overflow, capacity, number, number)
  assert len(events) == capacity * e_size
  return header + events


def write_gesture(path, seed=0, packets=6, per_packet=60):
  """Polarity packets (one with unused capacity, one after a TS overflow) mixed
  with a special-event packet and a 12-byte-event packet; returns the aedat
  path and the last timestamp before the overflow packet."""
  rng = np.random.default_rng(seed)
  chunks, t0 = [AEDAT3_HEADER], 1000
  for i in range(packets):
    x = rng.integers(0, 128, per_packet, dtype=np.uint32)
    y = rng.integers(0, 128, per_packet, dtype=np.uint32)
    p = rng.integers(0, 2, per_packet, dtype=np.uint32)
    data = (x << 17) | (y << 2) | (p << 1) | np.uint32(1)
    ts = t0 + np.cumsum(rng.integers(1, 50, per_packet)).astype(np.uint32)
    t0 = int(ts[-1])
    number = per_packet - 7 if i == 2 else per_packet    # unused but counted slots
    overflow = 1 if i == packets - 1 else 0
    if not overflow:
      t_plain = t0   # the last timestamp below the overflow
    events = np.stack([data, ts], 1).astype("<u4").tobytes()
    chunks.append(_packet(1, 8, overflow, events, per_packet, number))
    if i == 1:   # special events (type 0, 8 bytes) and a 12-byte-event type: skipped
      chunks.append(_packet(0, 8, 0, rng.bytes(8 * 3), 3, 3))
      chunks.append(_packet(5, 12, 0, rng.bytes(12 * 4), 4, 4))
  with open(path, "wb") as f:
    f.write(b"".join(chunks))
  return path, t_plain


def write_gesture_labels(path, t_end, seed=0):
  rng = np.random.default_rng(seed)
  cuts = np.linspace(1000, t_end, 7).astype(np.int64) + rng.integers(-20, 20, 7)
  rows = [(3, cuts[0], cuts[1]), (7, cuts[1], cuts[3]), (3, cuts[2], cuts[4]),  # overlap
          (11, cuts[4], cuts[5]), (1, cuts[5], cuts[6] + 10)]
  with open(path, "w") as f:
    f.write("class,startTime_usec,endTime_usec\n")
    for r in rows:
      f.write(",".join(str(int(v)) for v in r) + "\n")
  return path


def write_nmnist(path, n=300, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 34, n)
  y = rng.integers(0, 34, n)
  p = rng.integers(0, 2, n)
  t = np.sort(rng.integers(0, 2**23, n))
  rec = np.stack([x, y, (p << 7) | (t >> 16), (t >> 8) & 255, t & 255], 1).astype(np.uint8)
  with open(path, "wb") as f:
    f.write(rec.tobytes())
  return path


# ----------------------------------------------------------------------------- CIFAR10-DVS


def test_cifar10dvs_equals_spikingjelly(sj, tmp_path):
  for seed in range(3):
    path = write_cifar10dvs(tmp_path / f"cifar10_{seed}.aedat", n=300 + seed, seed=seed)
    ours = raw_events.read_cifar10dvs_aedat(path)
    assert_same_events(ours, sj["cifar10_dvs"]._load_origin_data(path))
    assert ours["t"].dtype == np.uint32 and ours["p"].dtype == np.int64
    assert ours["x"].max() <= 127 and ours["y"].max() <= 127


def test_cifar10dvs_header_only_is_empty(tmp_path):
  path = tmp_path / "h.aedat"
  path.write_bytes(AEDAT2_HEADER)
  ev = raw_events.read_cifar10dvs_aedat(path)
  assert all(ev[k].shape == (0,) for k in KEYS)


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (AEDAT2_HEADER + b"\x00" * 13, "multiple of 8"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not an AEDAT 2.0"),
    (AEDAT3_HEADER + b"\x00" * 28, "not an AEDAT 2.0"),
])
def test_cifar10dvs_bad_files(tmp_path, content, words):
  path = tmp_path / "bad.aedat"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=words) as e:
    raw_events.read_cifar10dvs_aedat(path)
  assert str(path) in str(e.value)


def test_cifar10dvs_truncated_real_file(tmp_path):
  path = write_cifar10dvs(tmp_path / "c.aedat")
  path.write_bytes(path.read_bytes()[:-3])
  with pytest.raises(ValueError, match="multiple of 8") as e:
    raw_events.read_cifar10dvs_aedat(path)
  assert str(path) in str(e.value)


# ----------------------------------------------------------------------------- DVS128 Gesture


def test_gesture_aedat_equals_spikingjelly(sj, tmp_path):
  path, _ = write_gesture(tmp_path / "user01_fluorescent.aedat")
  ours = raw_events.read_gesture_aedat(path)
  assert_same_events(ours, sj["utils"].load_aedat_v3(path))
  assert ours["t"].shape == (6 * 60,)
  assert ours["t"][-1] >= 2**31     # the overflow packet


def test_gesture_split_equals_spikingjelly(sj, tmp_path):
  path, t_end = write_gesture(tmp_path / "user02_led.aedat", seed=1)
  csv = write_gesture_labels(tmp_path / "user02_led_labels.csv", t_end, seed=1)
  out = tmp_path / "sj"
  for label in range(11):
    (out / str(label)).mkdir(parents=True)
  sj["dvs128_gesture"]._split_aedat_files_to_np("user02_led", path, csv, out)
  samples = raw_events.split_gesture_recording(raw_events.read_gesture_aedat(path),
                                               raw_events.read_gesture_labels(csv))
  assert [(lab, k) for lab, k, _ in samples] == [(2, 0), (6, 0), (2, 1), (10, 0), (0, 0)]
  assert sum(len(os.listdir(out / str(i))) for i in range(11)) == len(samples)
  for label, k, ev in samples:
    assert ev["t"].size > 0
    with np.load(out / str(label) / f"user02_led_{k}.npz") as theirs:
      assert_same_events(ev, dict(theirs))


def test_gesture_trials_layout_equals_spikingjelly(sj, tmp_path):
  """SpikingJelly's full conversion of an extracted DvsGesture folder vs ours."""
  src = tmp_path / "extract" / "DvsGesture"
  src.mkdir(parents=True)
  trials = {"train": ["user01_fluorescent.aedat", "user02_led.aedat"],
            "test": ["user24_lab.aedat"]}
  for i, name in enumerate(trials["train"] + trials["test"]):
    _, t_end = write_gesture(src / name, seed=10 + i)
    write_gesture_labels(src / (name[:-6] + "_labels.csv"), t_end, seed=10 + i)
  for split, names in trials.items():
    (src / f"trials_to_{split}.txt").write_text("\n".join(names) + "\n\n")
  raw = tmp_path / "raw"
  raw.mkdir()
  sj["dvs128_gesture"].DVS128Gesture.create_raw_from_extracted(tmp_path / "extract", raw)
  for split in ("train", "test"):
    names = raw_events.read_gesture_trials(src / f"trials_to_{split}.txt")
    assert names == trials[split]
    expected = set()
    for name in names:
      stem = name[:-len(".aedat")]
      samples = raw_events.split_gesture_recording(
          raw_events.read_gesture_aedat(src / name),
          raw_events.read_gesture_labels(src / f"{stem}_labels.csv"))
      for label, k, ev in samples:
        rel = f"{label}/{stem}_{k}.npz"
        expected.add(rel)
        with np.load(raw / split / rel) as theirs:
          assert_same_events(ev, dict(theirs))
    got = {f"{lab}/{f}" for lab in os.listdir(raw / split) for f in os.listdir(raw / split / lab)}
    assert got == expected


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"#!AER-DAT2.0\r\n" + b"\x00" * 16, "not an AEDAT 3.1"),
    (b"PK\x03\x04" + b"\x00" * 40, "not an AEDAT 3.1"),
    (b"#!AER-DAT3.1\r\n#Format: RAW\r\n", "END-HEADER"),
    (AEDAT3_HEADER + b"\x01\x00" * 5, "packet header"),
    (AEDAT3_HEADER + struct.pack("<HhIIIIII", 1, 1, 8, 4, 0, 10, 10, 10) + b"\x00" * 79,
     "truncated AEDAT 3.1 packet"),
    (AEDAT3_HEADER + struct.pack("<HhIIIIII", 1, 1, 6, 4, 0, 2, 2, 2) + b"\x00" * 12,
     "eventSize 6"),
])
def test_gesture_bad_files(tmp_path, content, words):
  path = tmp_path / "bad.aedat"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=words) as e:
    raw_events.read_gesture_aedat(path)
  assert str(path) in str(e.value)


def test_gesture_header_only_is_empty(tmp_path):
  path = tmp_path / "h.aedat"
  path.write_bytes(AEDAT3_HEADER)
  ev = raw_events.read_gesture_aedat(path)
  assert all(ev[k].shape == (0,) and ev[k].dtype == np.int64 for k in KEYS)


@pytest.mark.parametrize("content, words", [
    ("class,startTime_usec,endTime_usec\n", "no rows"),
    ("class,startTime_usec,endTime_usec\n1,2\n3,4\n", "2 columns"),
    ("class,startTime_usec,endTime_usec\n12,0,5\n", "outside 1..11"),
    ("class,startTime_usec,endTime_usec\n0,0,5\n", "outside 1..11"),
    ("class,startTime_usec,endTime_usec\n1,a,5\n", "not a DVS128 Gesture labels csv"),
])
def test_gesture_bad_labels(tmp_path, content, words):
  path = tmp_path / "x_labels.csv"
  path.write_text(content)
  with pytest.raises(ValueError, match=words) as e:
    raw_events.read_gesture_labels(path)
  assert str(path) in str(e.value)


def test_gesture_single_label_row(tmp_path):
  path = tmp_path / "x_labels.csv"
  path.write_text("class,startTime_usec,endTime_usec\n4,10,20\n")
  assert raw_events.read_gesture_labels(path).tolist() == [[4, 10, 20]]


def test_gesture_bad_trials(tmp_path):
  path = tmp_path / "trials_to_train.txt"
  path.write_bytes(b"\xff\xfe\x00garbage")
  with pytest.raises(ValueError, match="not text") as e:
    raw_events.read_gesture_trials(path)
  assert str(path) in str(e.value)
  path.write_text("user01_led.aedat\nuser01_led_labels.csv\n")
  with pytest.raises(ValueError, match="does not name an .aedat") as e:
    raw_events.read_gesture_trials(path)
  assert str(path) in str(e.value)


# ----------------------------------------------------------------------------- N-MNIST


def test_nmnist_equals_spikingjelly(sj, tmp_path):
  for seed in range(3):
    path = write_nmnist(tmp_path / f"{seed:05d}.bin", n=300 + seed, seed=seed)
    ours = raw_events.read_nmnist_bin(path)
    assert_same_events(ours, sj["utils"].load_ATIS_bin(path))
    assert all(ours[k].dtype == np.uint32 for k in KEYS)


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"\x01\x02\x00\x00\x05" * 4 + b"\x01\x02", "multiple of 5"),
    (b"\xff" * 50, "outside the N-MNIST sensor"),
])
def test_nmnist_bad_files(tmp_path, content, words):
  path = tmp_path / "bad.bin"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=words) as e:
    raw_events.read_nmnist_bin(path)
  assert str(path) in str(e.value)


def test_nmnist_size_check_can_be_skipped(tmp_path):
  path = tmp_path / "caltech.bin"
  path.write_bytes(b"\xf0\x90\x80\x00\x07")
  ev = raw_events.read_nmnist_bin(path, width=None, height=None)
  assert ev["x"].tolist() == [240] and ev["y"].tolist() == [144]
  assert ev["p"].tolist() == [1] and ev["t"].tolist() == [7]


# ----------------------------------------------------------------------------- no torch / tonic


def test_readers_need_neither_torch_nor_tonic(tmp_path):
  """The readers run with torch and tonic made unimportable."""
  c = write_cifar10dvs(tmp_path / "c.aedat")
  g, _ = write_gesture(tmp_path / "g.aedat")
  n = write_nmnist(tmp_path / "n.bin")
  code = (
      "import sys\n"
      "sys.modules['torch'] = None; sys.modules['tonic'] = None\n"
      "sys.modules['spikingjelly'] = None\n"
      "from snnjax.data import raw_events as r\n"
      f"r.read_cifar10dvs_aedat({str(c)!r}); r.read_gesture_aedat({str(g)!r})\n"
      f"r.read_nmnist_bin({str(n)!r})\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
  assert res.returncode == 0, res.stderr
