"""Tests of snnjax.data: sources, event framing, augmentation, grain pipeline."""

import gzip
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from snnjax import data
from snnjax.data import augment, events, idx, sources

FMNIST = idx.FASHION_MNIST_FOLDER
REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(**overrides):
  c = data.default_config()
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  return c


def _take(pipeline, n):
  return [next(pipeline) for _ in range(n)]


def _assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


# ---------------------------------------------------------------------------
# IDX / Fashion-MNIST.


@pytest.fixture(scope="module")
def fmnist_train():
  return idx.load_fashion_mnist(FMNIST, "train")


def test_fashion_mnist_real_files(fmnist_train):
  images, labels = fmnist_train
  assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (60000,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels), np.full(10, 6000))
  assert images.mean() == pytest.approx(72.94, abs=0.01)
  test_images, test_labels = idx.load_fashion_mnist(FMNIST, "test")
  assert test_images.shape == (10000, 28, 28, 1)
  assert test_labels.min() == 0 and test_labels.max() == 9


def test_fashion_mnist_uncompressed_files(tmp_path):
  for stem in idx.FASHION_MNIST_FILES["test"]:
    with gzip.open(os.path.join(FMNIST, stem + ".gz")) as f, open(tmp_path / stem, "wb") as g:
      shutil.copyfileobj(f, g)
  images, labels = idx.load_fashion_mnist(str(tmp_path), "test")
  ref_images, ref_labels = idx.load_fashion_mnist(FMNIST, "test")
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(labels, ref_labels)


def test_fashion_mnist_missing_folder_and_file(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
    idx.load_fashion_mnist(missing, "train")
  assert missing in str(e.value) and "config.data.folder" in str(e.value)
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    data.create_dataset(_config(folder=str(tmp_path)), "train", batch_size=8, seed=0,
                        shard_index=0, shard_count=1)


def test_idx_roundtrip_and_corrupt_files(tmp_path):
  array = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
  header = bytes([0, 0, 0x0C, 3]) + np.array(array.shape, ">u4").tobytes()
  raw = header + array.astype(">i4").tobytes()
  np.testing.assert_array_equal(idx.parse_idx(raw), array)
  (tmp_path / "ok.gz").write_bytes(gzip.compress(raw))
  np.testing.assert_array_equal(idx.read_idx(tmp_path / "ok.gz"), array)

  (tmp_path / "short").write_bytes(raw[:-5])
  with pytest.raises(ValueError, match="truncated") as e:
    idx.read_idx(tmp_path / "short")
  assert "short" in str(e.value)
  (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
  with pytest.raises(ValueError, match="bad IDX magic"):
    idx.read_idx(tmp_path / "magic")
  (tmp_path / "header").write_bytes(raw[:9])
  with pytest.raises(ValueError, match="truncated IDX header"):
    idx.read_idx(tmp_path / "header")
  (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-12])
  with pytest.raises(ValueError, match="gzip"):
    idx.read_idx(tmp_path / "cut.gz")

  # A Fashion-MNIST folder whose image file is cut short.
  for stem in idx.FASHION_MNIST_FILES["test"]:
    shutil.copy(os.path.join(FMNIST, stem + ".gz"), tmp_path / (stem + ".gz"))
  images_file = tmp_path / "t10k-images-idx3-ubyte.gz"
  images_file.write_bytes(gzip.compress(gzip.decompress(images_file.read_bytes())[:-100], 1))
  with pytest.raises(ValueError, match="truncated"):
    idx.load_fashion_mnist(str(tmp_path), "test")


# ---------------------------------------------------------------------------
# tfds (mocked) and synthetic sources.


def test_tfds_cifar10_mock_through_pipeline():
  c = _config(source="tfds", name="cifar10", data_dir="/nonexistent/tfds",
              **{"augment.policy": "autoaugment_cifar10", "augment.cutout": 8})
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    train = data.create_dataset(c, "train", batch_size=8, seed=0, shard_index=0, shard_count=1)
    assert (train.num_examples, train.steps_per_epoch) == (40, 5)
    assert train.image_shape == (32, 32, 3) and train.num_classes == 10
    batches = _take(train, 6)  # crosses into the second epoch
    test = data.create_dataset(c, "test", batch_size=16, seed=0, shard_index=0, shard_count=1)
    eval_batches = list(test)
  for b in batches:
    assert b["image"].shape == (8, 32, 32, 3) and b["image"].dtype == np.float32
    assert b["label"].shape == (8,) and b["label"].dtype == np.int32
    assert b["label"].min() >= 0 and b["label"].max() < 10 and b["mask"].all()
  assert np.abs(batches[0]["image"]).max() > 0.5
  assert [b["mask"].sum() for b in eval_batches] == [16, 16, 8]
  assert all(b["image"].shape == (16, 32, 32, 3) for b in eval_batches)


def test_tfds_imagenet_mock_variable_sizes_and_missing_data(tmp_path):
  c = _config(source="tfds", name="imagenet2012", image_size=24, data_dir=str(tmp_path),
              eval_split="validation", **{"augment.random_resized_crop": True, "augment.crop_padding": 0})
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    shapes = {sources.tfds_source("imagenet2012", "train", str(tmp_path)).data[i]["image"].shape
              for i in range(6)}
    assert len(shapes) > 1  # the mock draws images of varying size
    train = data.create_dataset(c, "train", batch_size=4, seed=1, shard_index=0, shard_count=1)
    val = data.create_dataset(c, "validation", batch_size=5, seed=1, shard_index=0, shard_count=1)
    assert next(train)["image"].shape == (4, 24, 24, 3)
    assert [b["image"].shape[0] for b in val] == [5, 5, 5]
  assert train.num_classes == 1000
  with pytest.raises(FileNotFoundError, match="downloads/manual") as e:
    sources.tfds_source("imagenet2012", "train", str(tmp_path))
  assert str(tmp_path) in str(e.value)
  with pytest.raises(ValueError, match="image_size"):
    data.create_dataset(_config(source="tfds", name="imagenet2012", eval_split="validation"),
                        "train", batch_size=4,
                        seed=0, shard_index=0, shard_count=1)


def test_synthetic_source_is_deterministic():
  a = sources.SyntheticSource(100, (8, 8, 3), num_classes=7, seed=3)
  b = sources.SyntheticSource(100, (8, 8, 3), num_classes=7, seed=3)
  other_seed = sources.SyntheticSource(100, (8, 8, 3), num_classes=7, seed=4)
  other_split = sources.SyntheticSource(100, (8, 8, 3), num_classes=7, seed=3, split="test")
  for i in (0, 57, 99):
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    assert a[i]["label"] == b[i]["label"]
    assert a[i]["image"].shape == (8, 8, 3) and a[i]["image"].dtype == np.uint8
  assert not np.array_equal(a[5]["image"], other_seed[5]["image"])
  assert not np.array_equal(a[5]["image"], other_split[5]["image"])
  assert not np.array_equal(a[5]["image"], a[6]["image"])
  labels = [a[i]["label"] for i in range(100)]
  assert min(labels) >= 0 and max(labels) <= 6 and len(set(labels)) == 7
  with pytest.raises(IndexError):
    a[100]

  c = _config(source="synthetic", num_classes=5, **{"synthetic.shape": (4, 6, 6, 2),
                                                     "synthetic.num_train_examples": 64})
  runs = [_take(data.create_dataset(c, "train", batch_size=16, seed=9, shard_index=0,
                                    shard_count=1), 5) for _ in range(2)]
  _assert_same_batches(*runs)
  assert runs[0][0]["image"].shape == (16, 4, 6, 6, 2)
  assert runs[0][0]["label"].max() < 5


# ---------------------------------------------------------------------------
# Events.


def _stream(n, rng, h=6, w=5):
  t = np.sort(rng.integers(0, 10_000, n))
  return t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n)


def test_integrate_events_counts_polarity_and_boundaries():
  rng = np.random.default_rng(0)
  t, x, y, p = _stream(1003, rng)
  frames = events.integrate_events(t, x, y, p, num_frames=4, height=6, width=5)
  assert frames.shape == (4, 6, 5, 2) and frames.dtype == np.float32
  assert frames.sum() == 1003
  assert frames[..., 1].sum() == p.sum() and frames[..., 0].sum() == (p == 0).sum()
  # 1003 // 4 = 250 per frame, the last frame takes the 3 leftovers.
  np.testing.assert_array_equal(frames.sum(axis=(1, 2, 3)), [250, 250, 250, 253])
  expected = np.zeros((6, 5, 2))
  np.add.at(expected, (y[250:500], x[250:500], p[250:500]), 1)
  np.testing.assert_array_equal(frames[1], expected)

  # One ON event and one OFF event (polarity -1) land in their channels and frames.
  one = events.integrate_events([0, 1], [3, 0], [2, 4], [1, -1], num_frames=2, height=6, width=5)
  assert one[0, 2, 3, 1] == 1 and one[1, 4, 0, 0] == 1 and one.sum() == 2

  # Fewer events than frames: all in the last frame (SpikingJelly's rule).
  few = events.integrate_events([0, 1], [0, 1], [0, 1], [0, 1], num_frames=3, height=2, width=2)
  np.testing.assert_array_equal(few.sum(axis=(1, 2, 3)), [0, 0, 2])

  # Time windows of floor(99 / 4) = 24 (SpikingJelly's rule), the last one longer; unsorted
  # input is sorted first.
  order = rng.permutation(100)
  by_time = events.integrate_events(np.arange(100)[order], np.zeros(100, int)[order],
                                    np.zeros(100, int)[order], (np.arange(100) >= 50)[order],
                                    num_frames=4, height=1, width=1, split_by="time")
  np.testing.assert_array_equal(by_time[:, 0, 0, :], [[24, 0], [24, 0], [2, 22], [0, 28]])
  unsigned = events.integrate_events(np.arange(100, dtype=np.uint32)[order],
                                     np.zeros(100, int), np.zeros(100, int),
                                     (np.arange(100) >= 50)[order], num_frames=4, height=1,
                                     width=1, split_by="time")
  np.testing.assert_array_equal(unsigned, by_time)  # unsigned t (AEDAT files) is sorted too

  with pytest.raises(ValueError, match="outside the 6x5 sensor"):
    events.integrate_events([0], [5], [0], [1], num_frames=1, height=6, width=5)


def test_frame_resizing_conserves_counts():
  rng = np.random.default_rng(1)
  frames = rng.poisson(2.0, (3, 8, 8, 2)).astype(np.float32)
  pooled = events.resize_frames(frames, (4, 4))
  assert pooled.shape == (3, 4, 4, 2)
  np.testing.assert_array_equal(pooled[1, 0, 0], frames[1, :2, :2].sum(axis=(0, 1)))
  resized = events.resize_frames(frames, (5, 5))
  assert resized.shape == (3, 5, 5, 2)
  np.testing.assert_allclose(resized.sum(), frames.sum(), rtol=0.05)


def _write_events(folder, n_per_class, rng):
  counts = {}
  for name in ("alpha", "beta", "gamma"):
    os.makedirs(folder / name)
    for i in range(n_per_class):
      n = int(rng.integers(20, 60))
      t, x, y, p = _stream(n, rng, h=8, w=8)
      np.savez(folder / name / f"{i:03d}.npz", t=t, x=x, y=y, p=p)
      counts[(name, i)] = n
  return counts


def test_event_folder_source_and_pipeline(tmp_path):
  rng = np.random.default_rng(2)
  counts = _write_events(tmp_path / "events_np", 10, rng)
  train = events.EventFolderSource(str(tmp_path), "train", train_fraction=0.8)
  test = events.EventFolderSource(str(tmp_path), "test", train_fraction=0.8)
  assert train.class_names == ("alpha", "beta", "gamma")
  assert (len(train), len(test)) == (24, 6)
  assert not set(train.files) & set(test.files)
  example = test[1]  # alpha/009.npz
  assert example["label"] == 0 and len(example["t"]) == counts[("alpha", 9)]
  assert test[5]["label"] == 2

  c = _config(source="events", folder=str(tmp_path), **{
      "events.num_frames": 3, "events.sensor_size": (8, 8), "events.train_fraction": 0.8,
      "augment.crop_padding": 0, "augment.flip": False})
  pipe = data.create_dataset(c, "test", batch_size=4, seed=0, shard_index=0, shard_count=1)
  assert pipe.image_shape == (3, 8, 8, 2) and pipe.num_classes == 3
  batches = list(pipe)
  assert batches[0]["image"].shape == (4, 3, 8, 8, 2)  # [B, T, H, W, 2], batch-major
  totals = np.concatenate([b["image"].sum(axis=(1, 2, 3, 4))[b["mask"]] for b in batches])
  np.testing.assert_array_equal(totals, [len(test[i]["t"]) for i in range(6)])
  np.testing.assert_array_equal(np.concatenate([b["label"][b["mask"]] for b in batches]),
                                [0, 0, 1, 1, 2, 2])

  c.image_size = 4
  c.augment.crop_padding, c.augment.flip = 1, True
  aug = next(data.create_dataset(c, "train", batch_size=6, seed=0, shard_index=0, shard_count=1))
  assert aug["image"].shape == (6, 3, 4, 4, 2)

  # Split subfolders (DVS128 Gesture layout).
  _write_events(tmp_path / "gesture" / "train", 2, rng)
  _write_events(tmp_path / "gesture" / "test", 1, rng)
  assert len(events.EventFolderSource(str(tmp_path / "gesture"), "train")) == 6
  assert len(events.EventFolderSource(str(tmp_path / "gesture"), "test")) == 3
  with pytest.raises(ValueError, match="validation"):
    events.EventFolderSource(str(tmp_path / "gesture"), "validation")
  with pytest.raises(FileNotFoundError, match="config.data.folder"):
    events.EventFolderSource(str(tmp_path / "nothing"), "train")


def _event_folder_with_bad_file(root, write_bad, n_per_class=2):
  """A train/ test/ event folder (classes alpha, beta, gamma) whose train/alpha/000.npz
  ``write_bad(path)`` overwrites; returns that file's path."""
  rng = np.random.default_rng(5)
  _write_events(root / "train", n_per_class, rng)
  _write_events(root / "test", 1, rng)
  bad = root / "train" / "alpha" / "000.npz"
  write_bad(bad)
  return str(bad)


def _truncate(path):
  good = path.read_bytes()
  path.write_bytes(good[:len(good) // 2])


def _random_bytes(path):
  junk = np.random.default_rng(0).bytes(300)
  assert not junk.startswith((b"PK", b"\x93NUMPY"))
  path.write_bytes(junk)


def _corrupt_member(path):
  """Flips bytes inside the stored t.npy: the zip opens, reading t fails its CRC check."""
  raw = bytearray(path.read_bytes())
  raw[120:124] = bytes(b ^ 0xFF for b in raw[120:124])
  path.write_bytes(bytes(raw))


def _arrays(**overrides):
  def write(path):
    n = 5
    arrays = dict(t=np.arange(n), x=np.zeros(n, int), y=np.zeros(n, int), p=np.ones(n, int))
    np.savez(path, **{**arrays, **overrides})
  return write


_BAD_EVENT_FILES = {
    "empty": (lambda path: path.write_bytes(b""), "empty file (0 bytes)"),
    "random_bytes": (_random_bytes, "not a valid .npz archive"),
    "truncated": (_truncate, "truncated or damaged .npz archive"),
    "corrupt_member": (_corrupt_member, "array 't' is truncated or damaged"),
    "npy_not_npz": (lambda path: np.save(open(path, "wb"), np.arange(3)), "a single .npy array"),
    "t_2d": (_arrays(t=np.zeros((5, 1), int)), "array 't' has shape (5, 1), expected 1-D"),
    "t_object": (_arrays(t=np.array([0, "a", None, 3, 4], dtype=object)),
                 "array 't' holds Python objects"),
    "x_float": (_arrays(x=np.zeros(5)), "array 'x' has dtype float64, expected integers"),
    "p_strings": (_arrays(p=np.array(list("abcde"))), "array 'p' has dtype <U1"),
    "lengths": (_arrays(y=np.zeros(4, int)), "event arrays differ in length"),
    "missing": (lambda path: np.savez(path, t=np.arange(3)),
                "missing event arrays ['p', 'x', 'y']"),
}


@pytest.mark.parametrize("kind", sorted(_BAD_EVENT_FILES))
def test_bad_event_file_is_a_value_error_naming_it(tmp_path, kind):
  write_bad, problem = _BAD_EVENT_FILES[kind]
  bad = _event_folder_with_bad_file(tmp_path, write_bad)
  expected = re.escape(f"event file {bad}: {problem}") + ".*re-create it from the original"
  source = events.EventFolderSource(str(tmp_path), "train")
  with pytest.raises(ValueError, match=expected):
    source[source.files.index(bad)]
  # The pipeline (grain, reader threads) hands the caller the same ValueError.
  c = _config(source="events", folder=str(tmp_path), read_threads=2, **{
      "events.num_frames": 2, "events.sensor_size": (8, 8), "augment.crop_padding": 0})
  pipe = data.create_dataset(c, "train", batch_size=6, seed=0, shard_index=0, shard_count=1)
  with pytest.raises(ValueError, match=expected):
    next(pipe)


def test_train_py_reports_a_bad_event_file_in_one_line(tmp_path):
  bad = _event_folder_with_bad_file(tmp_path / "dvs", lambda path: path.write_bytes(b""), 8)
  overrides = {
      "data.folder": str(tmp_path / "dvs"), "data.num_classes": 3, "data.image_size": 0,
      "data.events.sensor_size": (16, 16), "data.events.num_frames": 2, "model.T": 2,
      "model.width": 0.0625, "sml.heads": (2,), "sml.head_channels": 8, "batch_size": 8,
      "data.augment.crop_padding": 0, "max_steps": 1, "progress_bar": False,
  }
  cmd = [sys.executable, str(REPO / "train.py"), "--config",
         str(REPO / "configs/cifar10dvs_vggsnn.py"), "--workdir", str(tmp_path / "work"),
         *(f"--config.{k}={v if isinstance(v, str) else repr(v)}" for k, v in overrides.items())]
  run = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
  assert run.returncode == 2, run.stdout
  assert "Traceback" not in run.stdout, run.stdout
  errors = [line for line in run.stdout.splitlines() if line.startswith("error:")]
  assert errors == [f"error: event file {bad}: empty file (0 bytes); re-create it from the "
                    f"original dataset file, or delete it."], run.stdout


# ---------------------------------------------------------------------------
# Augmentation.


def test_crop_flip_cutout():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
  padded = np.pad(image, ((3, 3), (3, 3), (0, 0)))
  shifts = set()
  for _ in range(30):
    crop = augment.pad_and_random_crop(image, rng, 3)
    assert crop.shape == image.shape and crop.dtype == np.uint8
    matches = [(dy, dx) for dy in range(7) for dx in range(7)
               if np.array_equal(crop, padded[dy:dy + 10, dx:dx + 12])]
    assert matches
    shifts.add(matches[0])
  assert len(shifts) > 5

  np.testing.assert_array_equal(augment.random_flip(image, rng, p=1.0), image[:, ::-1])
  np.testing.assert_array_equal(augment.random_flip(image, rng, p=0.0), image)
  frames = rng.random((4, 10, 12, 2))
  np.testing.assert_array_equal(augment.random_flip(frames, rng, p=1.0), frames[:, :, ::-1])

  ones = np.ones((16, 16, 3), np.float32)
  for _ in range(10):
    out = augment.cutout(ones, rng, 6)
    zeroed = (out == 0).all(axis=-1).sum()
    assert 0 < zeroed <= 36 and ((out == 0) | (out == 1)).all()
  assert ones.min() == 1  # input untouched


def test_normalisation_stats(fmnist_train):
  images = fmnist_train[0][:20000]
  out = augment.normalize(images, *[sources.DATASETS["fashion_mnist"][k] for k in ("mean", "std")])
  assert out.dtype == np.float32 and out.shape == images.shape
  assert abs(out.mean()) < 0.01 and abs(out.std() - 1) < 0.01
  rgb = np.array([[[0, 51, 255]]], np.uint8)
  np.testing.assert_allclose(augment.normalize(rgb, (0.0, 0.1, 0.5), (1.0, 0.5, 0.25)),
                             [[[0.0, 0.2, 2.0]]], atol=1e-6)


def test_resize_and_crops():
  rng = np.random.default_rng(3)
  checker = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)[..., None]
  small = augment.resize(checker, (4, 4))  # antialiased: averages, does not alias
  np.testing.assert_array_equal(small[1:3, 1:3], np.full((2, 2, 1), 128))
  assert np.abs(small.astype(int) - 128).max() <= 3  # borders renormalise the kernel
  flat = np.full((7, 9, 3), 77, np.uint8)
  np.testing.assert_array_equal(augment.resize(flat, (13, 5)), np.full((13, 5, 3), 77))
  ramp = np.tile(np.arange(10, dtype=np.float32), (10, 1))[..., None]
  np.testing.assert_allclose(augment.resize(ramp, (10, 20))[0, 1:-1, 0],
                             np.arange(1, 19) * 0.5 - 0.25, atol=1e-5)
  image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
  for _ in range(5):
    assert augment.random_resized_crop(image, rng, 16).shape == (16, 16, 3)
  out = augment.resize_and_center_crop(image, 16, crop_fraction=0.5)  # short side -> 32
  assert out.shape == (16, 16, 3)
  np.testing.assert_array_equal(out, augment.resize(image, (32, 48))[8:24, 16:32])


@pytest.mark.parametrize("shape, size", [((37, 50, 3), (24, 24)), ((9, 7, 1), (20, 31)),
                                         ((300, 200, 3), (17, 224))])
def test_pillow_resize_of_uint8_images_is_the_float_filter_rounded(shape, size):
  image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
  exact = augment.resize(image.astype(np.float32), size)  # the NumPy path
  fast = augment.resize(image, size)
  assert fast.shape == (*size, shape[-1]) and fast.dtype == np.uint8
  assert np.abs(fast - np.clip(np.rint(exact), 0, 255)).max() <= 1


def test_autoaugment_and_randaugment_ops():
  rng = np.random.default_rng(4)
  image = rng.integers(30, 200, (16, 16, 3), dtype=np.uint8)
  for name in augment.OPS:
    out = augment.apply_op(name, image, 0.7, rng)
    assert out.shape == image.shape and out.dtype == np.uint8, name
  np.testing.assert_array_equal(augment.apply_op("invert", image, 0, rng), 255 - image)
  np.testing.assert_array_equal(augment.apply_op("posterize", image, 1.0, rng), image & 0xF0)
  solar = augment.apply_op("solarize", image, 0.5, rng)  # threshold 128
  np.testing.assert_array_equal(solar, np.where(image >= 128, 255 - image, image))
  stretched = augment.apply_op("auto_contrast", image, 0, rng)
  assert (stretched.min(axis=(0, 1)) == 0).all() and (stretched.max(axis=(0, 1)) == 255).all()
  equalized = augment.apply_op("equalize", image, 0, rng)
  assert equalized.max() > image.max() and equalized.min() < image.min()
  shifted = augment.translate_x(image, 0.5, np.random.default_rng(0))
  assert (shifted == 128).all(axis=-1).sum() >= 16 * 3  # gray fill moved in

  outs = [augment.autoaugment_cifar10(image, np.random.default_rng(s)) for s in range(20)]
  assert sum(not np.array_equal(o, image) for o in outs) > 10
  np.testing.assert_array_equal(augment.autoaugment_cifar10(image, np.random.default_rng(7)),
                                outs[7])
  gray = image[..., :1]
  for s in range(10):
    assert augment.randaugment(gray, np.random.default_rng(s), 2, 9).shape == gray.shape


# ---------------------------------------------------------------------------
# Pipeline: sharding, epochs, iterator state, config validation.


class _IndexSource:
  """Example i carries i as its image and label."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"image": np.full((1, 1, 1), i, np.int32), "label": i}


def _keep(example, rng):
  del rng
  return {"image": example["image"], "label": np.int32(example["label"]),
          "mask": np.bool_(example.get("mask", True))}


def _labels(batches):
  return [int(v) for b in batches for v in b["label"][b["mask"]]]


def test_sharding_epochs_and_eval_padding():
  n, shards, batch = 41, 2, 5

  def train_batches(shard_index, shard_count, batch_size):
    ds, steps = data.build_pipeline(_IndexSource(n), _keep, batch_size=batch_size, seed=3,
                                    shard_index=shard_index, shard_count=shard_count,
                                    train=True, num_epochs=2)
    return list(ds), steps

  single, single_steps = train_batches(0, 1, batch * shards)
  assert single_steps == 4  # 41 // 10
  assert len(single) == 8  # 82 shuffled examples over two epochs -> 8 full global batches
  stream = _labels(single)
  assert stream[:40] != sorted(stream[:40])  # shuffled
  first_epoch = _labels(single[:4])
  assert len(set(first_epoch)) == 40 and set(first_epoch) <= set(range(n))

  per_process = []
  for index in range(shards):
    batches, steps = train_batches(index, shards, batch)
    assert steps == 4 and len(batches) == 8
    per_process.append(batches)
  assert not set(_labels(per_process[0][:4])) & set(_labels(per_process[1][:4]))
  for step, global_batch in enumerate(single):
    # The global batch is the processes' rows in order, whatever the process count.
    rows = np.concatenate([per_process[i][step]["label"] for i in range(shards)])
    np.testing.assert_array_equal(rows, global_batch["label"])

  eval_labels = []
  for index in range(shards):
    ds, steps = data.build_pipeline(_IndexSource(n), _keep, batch_size=batch, seed=3,
                                    shard_index=index, shard_count=shards, train=False)
    batches = list(ds)
    assert steps == 5 and len(batches) == 5  # ceil(ceil(41 / 2) / 5) on both shards
    assert all(len(b["label"]) == batch for b in batches)
    eval_labels.append(_labels(batches))
  assert eval_labels[0] == list(range(0, 41, 2)) and eval_labels[1] == list(range(1, 41, 2))


def test_iterator_state_restores_exact_batches():
  c = _config(**{"augment.policy": "randaugment", "augment.cutout": 4})
  kwargs = dict(batch_size=256, seed=5, shard_index=1, shard_count=3, train=True)
  run = data.create_dataset(c, "test", **kwargs)
  assert run.steps_per_epoch == 13  # 3333 // 256
  _take(run, 11)
  state = run.get_state()
  reference = _take(run, 4)  # crosses the epoch boundary
  restored = data.create_dataset(c, "test", **kwargs)
  restored.set_state(state)
  _assert_same_batches(_take(restored, 4), reference)
  fresh = data.create_dataset(c, "test", **kwargs)
  assert not np.array_equal(next(fresh)["image"], reference[0]["image"])

  c.read_threads = 2  # prefetching threads do not move the saved position
  threaded = data.create_dataset(c, "test", **kwargs)
  threaded.set_state(state)
  _assert_same_batches(_take(threaded, 4), reference)


def test_random_roll_is_circular_within_the_bound_and_the_same_for_every_frame():
  rng = np.random.default_rng(3)
  frames = rng.random((3, 9, 11, 2)).astype(np.float32)
  shifts = set()
  for _ in range(300):
    out = augment.random_roll(frames, rng, 2)
    assert out.shape == frames.shape and out.dtype == frames.dtype
    found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
             if np.array_equal(out, np.roll(frames, (dy, dx), axis=(1, 2)))]
    assert len(found) == 1  # one shift in [-2, 2]^2, applied to all T frames
    shifts.add(found[0])
  assert len(shifts) == 25  # every shift of the bound occurs, including the extremes
  np.testing.assert_allclose(out.sum(axis=(1, 2)), frames.sum(axis=(1, 2)), rtol=1e-6)
  assert augment.random_roll(frames, rng, 0) is frames


def test_event_pipeline_applies_the_roll_in_training(tmp_path):
  rng = np.random.default_rng(4)
  _write_events(tmp_path / "events_np", 4, rng)
  c = _config(source="events", folder=str(tmp_path), **{
      "events.num_frames": 2, "events.sensor_size": (8, 8), "events.train_fraction": 0.5,
      "augment.crop_padding": 0, "augment.flip": False})
  common = dict(batch_size=6, seed=0, shard_index=0, shard_count=1, train=True)
  plain = next(data.create_dataset(c, "train", **common))["image"]
  c.augment.roll = 3
  rolled = next(data.create_dataset(c, "train", **common))["image"]
  assert not np.array_equal(plain, rolled)
  for a, b in zip(plain, rolled):  # each example: some circular shift of its frames
    assert any(np.array_equal(b, np.roll(a, (dy, dx), axis=(1, 2)))
               for dy in range(-3, 4) for dx in range(-3, 4))


def test_released_code_normalisation_constants():
  """SML / SGS code: CIFAR-10 mean as the dataset's, std (0.2023, 0.1994, 0.2010)."""
  info = data.sources.synthetic_source(4, (4, 4, 3), 10, 0, "train")
  dataset = _config(source="tfds", name="cifar10")
  released = _config(source="tfds", name="cifar10", normalization="released_code")
  t_dataset, _ = data.pipeline.make_transform(dataset, info, train=False)
  t_released, _ = data.pipeline.make_transform(released, info, train=False)
  assert t_dataset.std == (0.2470, 0.2435, 0.2616)
  assert t_released.std == (0.2023, 0.1994, 0.2010)
  assert t_released.mean == t_dataset.mean == (0.4914, 0.4822, 0.4465)
  explicit = _config(source="tfds", name="cifar10", normalization="released_code",
                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
  assert data.pipeline.make_transform(explicit, info, train=False)[0].std == (0.25, 0.25, 0.25)
  c100 = _config(source="tfds", name="cifar100", normalization="released_code")
  assert data.pipeline.make_transform(c100, info, train=False)[0].std == (0.2675, 0.2565, 0.2761)


@pytest.mark.parametrize("overrides, kwargs, message", [
    ({"normalization": "imagenet"}, {}, "normalization='imagenet' unknown"),
    ({"normalization": "released_code"}, {}, "no constants for fashion_mnist_idx"),
    ({"augment.roll": -1}, {}, r"augment.roll=-1 must be an int >= 0"),
    ({"source": "mnist_csv"}, {}, "source='mnist_csv' unknown; allowed"),
    ({"source": "tfds", "name": "svhn"}, {}, "name='svhn' unsupported"),
    ({"source": "tfds", "name": "imagenet2012", "image_size": 8}, {},
     r"eval_split='test' is not a labelled split of tfds imagenet2012; allowed: \('train', "
     r"'validation'\)"),
    ({"augment.policy": "trivial"}, {}, "policy='trivial' unknown"),
    ({"events.split_by": "rate"}, {}, "split_by='rate' unknown"),
    ({"image_size": -1}, {}, "image_size=-1"),
    ({"mean": (0.5,)}, {}, "std=None"),
    ({}, {"batch_size": 0}, "batch_size=0 must be an int >= 1"),
    ({}, {"shard_index": 2}, r"shard_index=2 must be an int in \[0, shard_count=2\)"),
    ({}, {"num_epochs": 0}, "num_epochs=0"),
    ({"num_classes": 7}, {}, "num_classes=7 but"),
])
def test_config_validation(overrides, kwargs, message):
  args = dict(batch_size=8, seed=0, shard_index=0, shard_count=2) | kwargs
  with pytest.raises(ValueError, match=message):
    data.create_dataset(_config(**overrides), "test", **args)


def test_unknown_config_key():
  c = data.default_config()
  c.unlock()
  c.augment.mixup = 0.2
  with pytest.raises(ValueError, match=r"unknown config.data keys \['augment.mixup'\]"):
    data.validate_config(c)


def test_idx_split_slicing():
  info = data.sources.fashion_mnist_idx_source(split="test[:100]")
  full = data.sources.fashion_mnist_idx_source(split="test")
  assert len(info.data) == 100
  np.testing.assert_array_equal(info.data[99]["image"], full.data[99]["image"])
  assert len(data.sources.fashion_mnist_idx_source(split="test[-10:]").data) == 10
  with pytest.raises(ValueError, match="NAME\\[start:stop\\]"):
    data.sources.fashion_mnist_idx_source(split="test[:x]")
