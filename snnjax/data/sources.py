"""Random-access data sources: local IDX, CIFAR python files, image folders,
tensorflow-datasets, synthetic, events.

A source is anything with ``__len__`` and ``__getitem__(i) -> dict`` (grain's
random-access protocol). Image sources give ``{"image": uint8 [H, W, C],
"label": int}``; the event source gives raw streams (see :mod:`.events`).
:class:`SourceInfo` carries what the pipeline needs to know about one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib

import numpy as np

from snnjax.data import cifar, events, idx, image_folder

#: Known datasets: number of classes, mean and std per channel on the 0..1 scale (train split).
DATASETS = {
    "fashion_mnist": dict(num_classes=10, mean=(0.2860,), std=(0.3530,)),
    "cifar10": dict(num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(num_classes=100, mean=(0.5071, 0.4865, 0.4409),
                     std=(0.2673, 0.2564, 0.2762)),
    "imagenet2012": dict(num_classes=1000, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
}

#: Normalisation constants of the papers' released code where they differ from :data:`DATASETS`
#: (``config.data.normalization="released_code"``). CIFAR-10's std (0.2023, 0.1994, 0.2010) is
#: the widely copied one of public PyTorch CIFAR code, used by the released code of Surrogate
#: Module Learning and of surrogate gradient scaling (the true train-split std is
#: (0.2470, 0.2435, 0.2616)); CIFAR-100's are the SML code's. ImageNet's are the usual ones,
#: the same in both tables.
RELEASED_CODE_STATS = {
    "cifar10": dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010)),
    "cifar100": dict(mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)),
    "imagenet2012": dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
}

def statistics_table(normalization: str) -> dict[str, dict]:
  """:data:`RELEASED_CODE_STATS` for ``"released_code"``, else :data:`DATASETS`."""
  return RELEASED_CODE_STATS if normalization == "released_code" else DATASETS


def statistics_key(source: str, name: str) -> str:
  """The key of a config's dataset in the statistics tables (the IDX source is Fashion-MNIST)."""
  return "fashion_mnist" if source == "fashion_mnist_idx" else name


#: Datasets readable through :func:`tfds_source`.
TFDS_NAMES = tuple(DATASETS)

#: Their labelled tfds splits (imagenet2012's "test" has no labels).
TFDS_SPLITS = {"fashion_mnist": ("train", "test"), "cifar10": ("train", "test"),
               "cifar100": ("train", "test"), "imagenet2012": ("train", "validation")}

#: Datasets readable through :func:`cifar_python_source` (keys of :data:`DATASETS` too).
CIFAR_NAMES = tuple(cifar.LAYOUTS)


@dataclasses.dataclass(frozen=True)
class SourceInfo:
  """What the pipeline needs to know about a source.

  Attributes:
    data: the random-access source.
    num_classes: number of classes; labels are 0..num_classes-1.
    image_shape: per-example [H, W, C] as stored, None for a size that varies
      (e.g. (None, None, 3) for ImageNet); None as a whole for event streams.
    kind: "image" (uint8 images) or "events" (raw event streams).
    class_names: the class names in label order where the source knows them, else None.
  """

  data: object
  num_classes: int
  image_shape: tuple[int, ...] | None
  kind: str = "image"
  class_names: tuple[str, ...] | None = None


class ArraySource:
  """In-memory images uint8 [N, H, W, C] and labels int [N] as a random-access source."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    self.images, self.labels = images, labels

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict:
    return {"image": self.images[index], "label": int(self.labels[index])}


_SLICED_SPLIT = re.compile(r"^(\w+)(?:\[(-?\d*):(-?\d*)\])?$")


def parse_split(split: str) -> tuple[str, slice]:
  """"test" -> ("test", [:]); "test[:1000]" -> ("test", [:1000]) (tfds's slicing syntax)."""
  match = _SLICED_SPLIT.match(split)
  if not match:
    raise ValueError(f"split {split!r} is not NAME or NAME[start:stop], e.g. 'test[:1000]'.")
  name, start, stop = match.groups()
  return name, slice(int(start) if start else None, int(stop) if stop else None)


def fashion_mnist_idx_source(folder: str = idx.FASHION_MNIST_FOLDER,
                             split: str = "train") -> SourceInfo:
  """Fashion-MNIST from local IDX files (see :func:`idx.load_fashion_mnist`).

  ``split`` may take a slice as in tfds, e.g. "test[:1000]".
  """
  name, rows = parse_split(split)
  images, labels = idx.load_fashion_mnist(folder, name)
  return SourceInfo(ArraySource(images[rows], labels[rows]), num_classes=10,
                    image_shape=(28, 28, 1))


def cifar_python_source(path: str, name: str = "cifar10", split: str = "train") -> SourceInfo:
  """CIFAR-10/100 from the official python-version files (see :func:`cifar.load_cifar`).

  ``path`` is the tarball, its extracted folder, or a folder holding either;
  ``split`` may take a slice as in tfds, e.g. "test[:1000]".
  """
  if name not in CIFAR_NAMES:
    raise ValueError(f"CIFAR dataset {name!r} unknown; allowed: {CIFAR_NAMES}.")
  split_name, rows = parse_split(split)
  images, labels, class_names = cifar.load_cifar(path, name, split_name)
  return SourceInfo(ArraySource(images[rows], labels[rows]), num_classes=len(class_names),
                    image_shape=(32, 32, 3), class_names=class_names)


def image_folder_source(root: str, split: str) -> SourceInfo:
  """ROOT/SPLIT/CLASS/IMAGE files (see :mod:`.image_folder`), decoded when read.

  ``split`` may take a slice as in tfds, e.g. "val[:1000]" (the examples are
  in a fixed shuffled order, so a slice draws from all classes).
  """
  split_name, rows = parse_split(split)
  data = image_folder.ImageFolderSource(root, split_name)
  data.paths, data.labels = data.paths[rows], data.labels[rows]
  return SourceInfo(data, num_classes=len(data.class_names), image_shape=(None, None, 3),
                    class_names=data.class_names)


class SyntheticSource:
  """Deterministic random examples for throughput benchmarks.

  Example i of a source is drawn from ``np.random.default_rng([seed, split_id, i])``
  with split_id = crc32(split): image uint8 uniform in 0..255 of ``shape``, then
  label uniform in 0..num_classes-1. The same (seed, split, i) always gives the
  same example, independent of access order.
  """

  def __init__(self, num_examples: int, shape: tuple[int, ...], num_classes: int,
               seed: int = 0, split: str = "train"):
    self.num_examples, self.shape, self.num_classes = num_examples, tuple(shape), num_classes
    self._key = (seed, zlib.crc32(split.encode()))

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.num_examples:
      raise IndexError(f"index {index} out of range for {self.num_examples} examples.")
    rng = np.random.default_rng([*self._key, int(index)])
    image = rng.integers(0, 256, self.shape, dtype=np.uint8)
    return {"image": image, "label": int(rng.integers(self.num_classes))}


def synthetic_source(num_examples: int, shape: tuple[int, ...], num_classes: int,
                     seed: int = 0, split: str = "train") -> SourceInfo:
  """A :class:`SyntheticSource` with its info."""
  data = SyntheticSource(num_examples, shape, num_classes, seed, split)
  return SourceInfo(data, num_classes=num_classes, image_shape=tuple(shape))


class _TfdsImages:
  """Keeps only "image" and "label" of a tfds data source's examples."""

  def __init__(self, data):
    self.data = data

  def __len__(self) -> int:
    return len(self.data)

  def __getitem__(self, index: int) -> dict:
    example = self.data[index]
    return {"image": example["image"], "label": int(example["label"])}


def _prepare_hint(name: str, data_dir: str | None) -> str:
  where = data_dir or os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))
  if name == "imagenet2012":
    return (f"imagenet2012 needs a manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {where}/downloads/manual/, then run "
            f"`tfds build imagenet2012 --data_dir={where} --file_format=array_record` "
            f"(needs TensorFlow once; reading afterwards does not).")
  return (f"prepare it where the internet is reachable with `tfds build {name} "
          f"--data_dir={where} --file_format=array_record` and copy that folder here.")


def tfds_source(name: str, split: str, data_dir: str | None = None) -> SourceInfo:
  """A tensorflow-datasets dataset read with ``tfds.data_source`` (random access, no TensorFlow).

  The dataset must already be prepared in ``data_dir`` in the ArrayRecord
  format; nothing is downloaded.

  Args:
    name: one of :data:`TFDS_NAMES`.
    split: a tfds split, e.g. "train", "test", "validation", "train[:90%]".
    data_dir: the tfds data folder; None for tfds's default.
  """
  import tensorflow_datasets as tfds  # heavy import, only when used

  if name not in TFDS_NAMES:
    raise ValueError(f"tfds dataset {name!r} unsupported; allowed: {TFDS_NAMES}.")
  try:
    data = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as e:  # tfds raises assorted types for "not prepared here"
    raise FileNotFoundError(f"tfds dataset {name!r} (split {split!r}) is not readable from "
                            f"data_dir={data_dir!r}: {e}\n{_prepare_hint(name, data_dir)}") from e
  features = data.dataset_info.features
  shape = tuple(features["image"].shape)
  return SourceInfo(_TfdsImages(data), num_classes=features["label"].num_classes,
                    image_shape=shape)


def event_folder_source(folder: str, split: str, train_fraction: float = 0.9) -> SourceInfo:
  """:func:`events.open_event_source` with its info (image_shape None: set by framing)."""
  data = events.open_event_source(os.path.expanduser(folder), split, train_fraction)
  return SourceInfo(data, num_classes=len(data.class_names), image_shape=None, kind="events")
