"""Tests of the CIFAR-10/100 python-version source (snnjax.data.cifar) on files written here."""

import io
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from snnjax import data
from snnjax.data import cifar, sources

REPO = pathlib.Path(__file__).resolve().parents[1]
PER_FILE = 12  # images per batch file


def _images(n: int, offset: int) -> np.ndarray:
  """uint8 [n, 32, 32, 3] that no transpose or channel swap leaves unchanged."""
  i, r, c, ch = np.meshgrid(np.arange(n), np.arange(32), np.arange(32), np.arange(3),
                            indexing="ij")
  return ((offset + i) * 11 + r * 3 + c * 7 + ch * 85 + r * c).astype(np.uint8)


def _batch_bytes(images: np.ndarray, labels: list[int], label_key: str) -> bytes:
  """One batch file exactly as the official ones: Python 2 style byte-string keys, protocol 2."""
  flat = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # R plane, G plane, B plane
  batch = {b"batch_label": b"a batch", b"data": np.ascontiguousarray(flat),
           label_key.encode(): labels,
           b"filenames": [f"img_{k}.png".encode() for k in range(len(images))]}
  if label_key == "fine_labels":
    batch[b"coarse_labels"] = [x // 5 for x in labels]
  return pickle.dumps(batch, protocol=2)


def _meta_bytes(dataset: str) -> bytes:
  layout = cifar.LAYOUTS[dataset]
  names = [f"class_{k}".encode() for k in range(layout.num_classes)]
  meta = {layout.names_key.encode(): names}
  if dataset == "cifar10":
    meta.update({b"num_cases_per_batch": PER_FILE, b"num_vis": 3072})
  else:
    meta[b"coarse_label_names"] = [f"super_{k}".encode() for k in range(20)]
  return pickle.dumps(meta, protocol=2)


def _official_files(dataset: str) -> tuple[dict[str, bytes], dict[str, tuple]]:
  """file name -> bytes, and split -> (images, labels) as written."""
  layout = cifar.LAYOUTS[dataset]
  files, expected, offset = {layout.meta: _meta_bytes(dataset)}, {}, 0
  for split, names in layout.files.items():
    images, labels = [], []
    for name in names:
      imgs = _images(PER_FILE, offset)
      labs = [(offset + k * 7) % layout.num_classes for k in range(PER_FILE)]
      files[name] = _batch_bytes(imgs, labs, layout.label_key)
      images.append(imgs)
      labels += labs
      offset += PER_FILE
    expected[split] = (np.concatenate(images), np.array(labels, np.int32))
  return files, expected


def _write_folder(root: pathlib.Path, dataset: str, files: dict[str, bytes]) -> pathlib.Path:
  folder = root / cifar.LAYOUTS[dataset].folder
  folder.mkdir(parents=True)
  for name, content in files.items():
    (folder / name).write_bytes(content)
  return folder


def _write_tarball(path: pathlib.Path, dataset: str, files: dict[str, bytes]) -> pathlib.Path:
  with tarfile.open(path, "w:gz") as archive:
    top = tarfile.TarInfo(cifar.LAYOUTS[dataset].folder)
    top.type = tarfile.DIRTYPE
    archive.addfile(top)
    for name, content in files.items():
      info = tarfile.TarInfo(f"{cifar.LAYOUTS[dataset].folder}/{name}")
      info.size = len(content)
      archive.addfile(info, io.BytesIO(content))
  return path


@pytest.fixture(params=["cifar10", "cifar100"])
def dataset(request):
  return request.param


@pytest.fixture(params=["tarball", "folder", "parent"])
def written(request, dataset, tmp_path):
  """(path to give the source, expected split contents)."""
  files, expected = _official_files(dataset)
  if request.param == "tarball":
    path = _write_tarball(tmp_path / cifar.LAYOUTS[dataset].tarball, dataset, files)
  elif request.param == "folder":
    path = _write_folder(tmp_path, dataset, files)
  else:
    _write_folder(tmp_path, dataset, files)
    path = tmp_path
  return str(path), expected


def test_channel_major_layout_decodes_to_nhwc():
  image = _images(1, 0)
  raw = _batch_bytes(image, [3], "labels")
  flat = pickle.loads(raw, encoding="bytes")[b"data"][0]
  # The official order: red plane (row-major), then green, then blue.
  assert flat[0] == image[0, 0, 0, 0] and flat[1] == image[0, 0, 1, 0]
  assert flat[32] == image[0, 1, 0, 0] and flat[1024] == image[0, 0, 0, 1]
  assert flat[2048 + 5 * 32 + 9] == image[0, 5, 9, 2]
  images, labels = cifar.parse_batch(raw, "labels", 10)
  np.testing.assert_array_equal(images, image)
  assert images.flags.c_contiguous and labels.tolist() == [3] and labels.dtype == np.int32
  assert not np.array_equal(image, image.transpose(0, 2, 1, 3))
  assert not np.array_equal(image, image[..., ::-1])


def test_source_reads_what_was_written(dataset, written):
  path, expected = written
  for split in ("train", "test"):
    info = sources.cifar_python_source(path, dataset, split)
    images, labels = expected[split]
    assert len(info.data) == len(images) and info.image_shape == (32, 32, 3)
    assert info.num_classes == cifar.LAYOUTS[dataset].num_classes
    assert info.class_names[:2] == ("class_0", "class_1")
    got = [info.data[i] for i in range(len(info.data))]
    np.testing.assert_array_equal(np.stack([g["image"] for g in got]), images)
    assert [g["label"] for g in got] == labels.tolist()
    assert got[0]["image"].dtype == np.uint8
  sliced = sources.cifar_python_source(path, dataset, "train[5:9]")
  np.testing.assert_array_equal(sliced.data.images, expected["train"][0][5:9])
  np.testing.assert_array_equal(sliced.data.labels, expected["train"][1][5:9])


def _config(path, dataset, **overrides):
  c = data.default_config()
  c.update(dict(source="cifar_python", name=dataset, folder=path))
  c.augment.update(dict(crop_padding=0, flip=False))
  c.update(overrides)
  data.validate_config(c)
  return c


def test_pipeline_reads_what_was_written(dataset, written):
  path, expected = written
  images, labels = expected["test"]
  c = _config(path, dataset, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
  test = data.create_dataset(c, "test", batch_size=5, seed=0, shard_index=0, shard_count=1)
  assert test.num_classes == cifar.LAYOUTS[dataset].num_classes
  batches = list(test)
  mask = np.concatenate([b["mask"] for b in batches])
  got = np.concatenate([b["image"] for b in batches])[mask]
  np.testing.assert_allclose(got * 255, images, atol=1e-3)
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[mask], labels)

  # Train: shuffled, so compare as multisets; default normalisation is the dataset's table.
  c = _config(path, dataset)
  train = data.create_dataset(c, "train", batch_size=4, seed=0, shard_index=0, shard_count=1)
  n = len(expected["train"][1])
  assert (train.num_examples, train.steps_per_epoch) == (n, n // 4)
  batches = [next(train) for _ in range(n // 4)]
  stats = sources.DATASETS[dataset]
  pixels = np.concatenate([b["image"] for b in batches]) * np.array(stats["std"]) + stats["mean"]
  order = np.argsort(np.concatenate([b["label"] for b in batches]) * 1000 + pixels[:, 0, 0, 0] * 255)
  want = np.argsort(expected["train"][1] * 1000 + expected["train"][0][:, 0, 0, 0])
  np.testing.assert_allclose(pixels[order] * 255, expected["train"][0][want], atol=1e-3)


def test_released_code_normalisation_uses_the_cifar_constants(tmp_path):
  files, expected = _official_files("cifar100")
  path = str(_write_tarball(tmp_path / "c100.tar.gz", "cifar100", files))
  c = _config(path, "cifar100", normalization="released_code")
  batch = next(iter(data.create_dataset(c, "test", batch_size=2, seed=0, shard_index=0,
                                        shard_count=1)))
  stats = sources.RELEASED_CODE_STATS["cifar100"]
  want = (expected["test"][0][:2] / 255 - np.array(stats["mean"])) / np.array(stats["std"])
  np.testing.assert_allclose(batch["image"], want, atol=1e-4)


def test_bad_inputs_name_the_path_and_the_fix(tmp_path):
  missing = tmp_path / "nowhere" / "cifar-10-python.tar.gz"
  with pytest.raises(FileNotFoundError, match=r"nowhere.*kriz/cifar\.html.*config\.data\.folder"):
    sources.cifar_python_source(str(missing), "cifar10", "train")
  with pytest.raises(FileNotFoundError, match=r"holds neither.*cifar-10-batches-py"):
    sources.cifar_python_source(str(tmp_path), "cifar10", "train")

  files, _ = _official_files("cifar10")
  no_batches = _write_tarball(tmp_path / "meta_only.tar.gz", "cifar10",
                              {"batches.meta": files["batches.meta"]})
  with pytest.raises(ValueError, match=r"meta_only\.tar\.gz.*lacks.*data_batch_1.*kriz"):
    sources.cifar_python_source(str(no_batches), "cifar10", "train")

  c100_files, _ = _official_files("cifar100")
  c100 = _write_tarball(tmp_path / "c100.tar.gz", "cifar100", c100_files)
  with pytest.raises(ValueError, match=r"c100\.tar\.gz.*config\.data\.name='cifar100'"):
    sources.cifar_python_source(str(c100), "cifar10", "test")

  not_tar = tmp_path / "not_a.tar.gz"
  not_tar.write_bytes(b"hello, not a tarball")
  with pytest.raises(ValueError, match=r"not_a\.tar\.gz: not a readable tar archive"):
    sources.cifar_python_source(str(not_tar), "cifar10", "test")

  folder = _write_folder(tmp_path / "garbled", "cifar10", files)
  (folder / "test_batch").write_bytes(files["test_batch"][: len(files["test_batch"]) // 2])
  with pytest.raises(ValueError, match=r"garbled.*test_batch: not a CIFAR python-version pickle"):
    sources.cifar_python_source(str(folder), "cifar10", "test")
  (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8),
                                                    b"labels": [0, 1]}))
  with pytest.raises(ValueError, match=r"test_batch: b'data' must be uint8 \[N, 3072\]"):
    sources.cifar_python_source(str(folder), "cifar10", "test")
  (folder / "test_batch").write_bytes(pickle.dumps(subprocess.Popen))  # a global: refused
  with pytest.raises(ValueError, match=r"test_batch: not a CIFAR.*not allowed"):
    sources.cifar_python_source(str(folder), "cifar10", "test")
  (folder / "data_batch_3").unlink()
  with pytest.raises(FileNotFoundError, match=r"garbled.*data_batch_3.*is missing"):
    sources.cifar_python_source(str(folder), "cifar10", "train")
  with pytest.raises(ValueError, match="split 'validation' unknown"):
    sources.cifar_python_source(str(folder), "cifar10", "validation")


def test_config_validation():
  c = data.default_config()
  c.update(dict(source="cifar_python", name="imagenet2012"))
  with pytest.raises(ValueError, match="unsupported for source 'cifar_python'"):
    data.validate_config(c)


def test_recipes_default_to_the_python_files_and_keep_tfds():
  from snnjax.train import config as train_config, recipes
  c = recipes.sml_cifar("cifar100", "resnet19")
  assert (c.data.source, c.data.name) == ("cifar_python", "cifar100")
  assert c.data.folder == "~/data/cifar-100-python.tar.gz"
  assert recipes.sgs_cifar().data.folder == "~/data/cifar-10-python.tar.gz"
  imagenet = recipes.sml_imagenet()
  assert (imagenet.data.source, imagenet.data.folder) == ("image_folder", "~/data/imagenet")
  train_config.validate(imagenet)
  imagenet.data.update(dict(source="tfds", eval_split="validation"))
  train_config.validate(imagenet)
  c.data.source = "tfds"
  train_config.validate(c)


def test_no_tensorflow_import_on_this_path(tmp_path):
  files, _ = _official_files("cifar10")
  path = _write_tarball(tmp_path / "cifar-10-python.tar.gz", "cifar10", files)
  code = f"""
import sys
from snnjax import data
c = data.default_config()
c.update(dict(source="cifar_python", name="cifar10", folder={str(path)!r}))
data.validate_config(c)
batch = next(data.create_dataset(c, "train", batch_size=4, seed=0, shard_index=0, shard_count=1))
assert batch["image"].shape == (4, 32, 32, 3), batch["image"].shape
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets"))
assert not loaded, loaded
print("ok")
"""
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
  assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr
