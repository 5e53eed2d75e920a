"""CIFAR-10 / CIFAR-100 from the official "python version" files, no TensorFlow.

The files of https://www.cs.toronto.edu/~kriz/cifar.html (python version):

    cifar-10-python.tar.gz   -> cifar-10-batches-py/  data_batch_1 .. data_batch_5 (train,
                                10000 images each), test_batch (10000), batches.meta
    cifar-100-python.tar.gz  -> cifar-100-python/     train (50000), test (10000), meta

Every file is a Python pickle (written by Python 2's cPickle, hence read with
``encoding="bytes"``: the keys are byte strings) of a dict:

    b"data"          uint8 ndarray [N, 3072]: per image 1024 red, then 1024 green, then 1024
                     blue values, each plane the 32 x 32 pixels row-major
    b"labels"        CIFAR-10: list of N ints in 0..9
    b"fine_labels"   CIFAR-100: list of N ints in 0..99 (b"coarse_labels" 0..19 is not used)
    b"filenames", b"batch_label"   not used

and the meta file is a dict with b"label_names" (CIFAR-10) or b"fine_label_names"
(CIFAR-100): the class names as byte strings, in label order.

:func:`load_cifar` reads one split from the tarball (streamed into memory, never
extracted to disk), from the extracted folder, or from a folder holding either. The
pickles are read with an unpickler that only admits what these files hold (dicts,
lists, bytes, numbers and NumPy arrays), so a foreign pickle cannot run code.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
import zlib

import numpy as np

DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

#: Where the CIFAR configs look by default (``config.data.folder``; "~" is expanded).
DEFAULT_PATHS = {"cifar10": "~/data/cifar-10-python.tar.gz",
                 "cifar100": "~/data/cifar-100-python.tar.gz"}


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where one dataset's files are and which keys they use."""

  tarball: str
  folder: str
  files: dict[str, tuple[str, ...]]
  meta: str
  label_key: str
  names_key: str
  num_classes: int


LAYOUTS = {
    "cifar10": Layout(
        tarball="cifar-10-python.tar.gz", folder="cifar-10-batches-py",
        files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        meta="batches.meta", label_key="labels", names_key="label_names", num_classes=10),
    "cifar100": Layout(
        tarball="cifar-100-python.tar.gz", folder="cifar-100-python",
        files={"train": ("train",), "test": ("test",)},
        meta="meta", label_key="fine_labels", names_key="fine_label_names", num_classes=100),
}

#: The globals a CIFAR pickle may name: what pickling a NumPy array needs, and the codec call
#: with which Python 3's protocol 2 writes byte strings.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


def _fix_hint(dataset: str) -> str:
  layout = LAYOUTS[dataset]
  return (f"Download {layout.tarball} (\"CIFAR-{dataset[5:]} python version\") from "
          f"{DOWNLOAD_URL} and set `config.data.folder` to that file, to the {layout.folder}/ "
          f"folder it extracts to, or to a folder holding either.")


class _ArrayUnpickler(pickle.Unpickler):
  """An unpickler that refuses every global except NumPy's array reconstruction."""

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED_GLOBALS:
      raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
    return super().find_class(module, name)


def unpickle(data: bytes, name: str = "<bytes>") -> dict:
  """Decodes one CIFAR pickle into a dict with str keys.

  Raises:
    ValueError: not a pickle, a pickle of something other than a dict, or one
      that names a global other than NumPy's array reconstruction.
  """
  try:
    obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
  except Exception as e:  # pickle raises assorted types for garbled input
    raise ValueError(f"{name}: not a CIFAR python-version pickle ({type(e).__name__}: {e}).") from e
  if not isinstance(obj, dict):
    raise ValueError(f"{name}: not a CIFAR python-version pickle (holds a "
                     f"{type(obj).__name__}, expected a dict).")
  return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def parse_batch(data: bytes, label_key: str, num_classes: int,
                name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
  """Decodes one batch file (see the module docstring) into NHWC images and labels.

  Args:
    data: the file's bytes.
    label_key: "labels" (CIFAR-10) or "fine_labels" (CIFAR-100).
    num_classes: labels must be in 0..num_classes-1.
    name: shown in error messages (usually the file path).

  Returns:
    images: uint8 [N, 32, 32, 3] (channel-last, C-contiguous).
    labels: int32 [N].
  """
  batch = unpickle(data, name)
  for key in ("data", label_key):
    if key not in batch:
      raise ValueError(f"{name}: CIFAR batch lacks the key b{key!r}; has "
                       f"{sorted(map(str, batch))}.")
  pixels = np.asarray(batch["data"])
  if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
    raise ValueError(f"{name}: b'data' must be uint8 [N, 3072], got {pixels.dtype} "
                     f"{pixels.shape}.")
  labels = np.asarray(batch[label_key])
  if labels.shape != (len(pixels),) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name}: b{label_key!r} must be {len(pixels)} ints, got "
                     f"{labels.dtype} {labels.shape}.")
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"{name}: label {labels.min() if labels.min() < 0 else labels.max()} out "
                     f"of range 0..{num_classes - 1}.")
  images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)


def parse_label_names(data: bytes, names_key: str, num_classes: int,
                      name: str = "<bytes>") -> tuple[str, ...]:
  """The class names of a meta file, in label order."""
  meta = unpickle(data, name)
  names = meta.get(names_key)
  if not isinstance(names, (list, tuple)) or len(names) != num_classes:
    raise ValueError(f"{name}: meta file needs b{names_key!r} with {num_classes} class names; "
                     f"has keys {sorted(map(str, meta))}.")
  return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def locate(path: str | os.PathLike, dataset: str) -> str:
  """The tarball or extracted folder that ``path`` names for ``dataset``.

  ``path`` may be the tarball, the extracted folder, or a folder holding the
  extracted folder or the tarball under their official names ("~" expanded).

  Raises:
    FileNotFoundError: none of these exists, with where to download the data.
  """
  layout = LAYOUTS[dataset]
  path = os.path.expanduser(os.fspath(path))
  if os.path.isfile(path):
    return path
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, layout.meta)):
      return path
    for candidate in (layout.folder, layout.tarball):
      if os.path.exists(os.path.join(path, candidate)):
        return os.path.join(path, candidate)
    raise FileNotFoundError(
        f"{path!r} holds neither the {dataset} files ({layout.meta}, "
        f"{', '.join(layout.files['train'] + layout.files['test'])}) nor {layout.folder}/ nor "
        f"{layout.tarball}. {_fix_hint(dataset)}")
  raise FileNotFoundError(f"CIFAR path {path!r} does not exist. {_fix_hint(dataset)}")


def _read_folder(folder: str, names: tuple[str, ...], dataset: str) -> dict[str, bytes]:
  out = {}
  for name in names:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{dataset} file {path!r} is missing. {_fix_hint(dataset)}")
    with open(path, "rb") as f:
      out[name] = f.read()
  return out


def _read_tarball(tarball: str, names: tuple[str, ...], dataset: str) -> dict[str, bytes]:
  """Streams the tarball once, keeping the members ``<layout.folder>/<name>`` in memory."""
  layout = LAYOUTS[dataset]
  wanted = {f"{layout.folder}/{name}": name for name in names}
  out, tops = {}, set()
  try:
    with tarfile.open(tarball, "r|*") as archive:
      for member in archive:
        key = member.name[2:] if member.name.startswith("./") else member.name
        tops.add(key.split("/")[0])
        if key in wanted and member.isfile():
          out[wanted[key]] = archive.extractfile(member).read()
          if len(out) == len(wanted):
            break
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    raise ValueError(f"{tarball}: not a readable tar archive ({type(e).__name__}: {e}). "
                     f"{_fix_hint(dataset)}") from e
  missing = [f"{layout.folder}/{name}" for name in names if name not in out]
  if missing:
    others = [d for d, other in LAYOUTS.items() if other.folder in tops and d != dataset]
    hint = (f"It holds {others[0]}: set `config.data.name='{others[0]}'`." if others
            else _fix_hint(dataset))
    raise ValueError(f"{tarball}: the archive lacks {missing} (top-level entries: "
                     f"{sorted(tops)}). {hint}")
  return out


def load_cifar(path: str | os.PathLike, dataset: str = "cifar10",
               split: str = "train") -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """Reads one CIFAR split from the official python-version files.

  Args:
    path: the tarball, the extracted folder, or a folder holding either (:func:`locate`).
    dataset: "cifar10" or "cifar100".
    split: "train" (50000 examples in the official files) or "test" (10000).

  Returns:
    images: uint8 [N, 32, 32, 3], pixel values 0..255.
    labels: int32 [N], class ids 0..num_classes-1 (CIFAR-100: the fine labels).
    label_names: the class names from the meta file, in label order.
  """
  if dataset not in LAYOUTS:
    raise ValueError(f"CIFAR dataset {dataset!r} unknown; allowed: {sorted(LAYOUTS)}.")
  layout = LAYOUTS[dataset]
  if split not in layout.files:
    raise ValueError(f"{dataset} split {split!r} unknown; allowed: {sorted(layout.files)}.")
  where = locate(path, dataset)
  names = layout.files[split] + (layout.meta,)
  if os.path.isdir(where):
    raw = _read_folder(where, names, dataset)
  else:
    raw = _read_tarball(where, names, dataset)
  shown = (lambda name: os.path.join(where, name)) if os.path.isdir(where) else (
      lambda name: f"{where}:{layout.folder}/{name}")
  label_names = parse_label_names(raw[layout.meta], layout.names_key, layout.num_classes,
                                  shown(layout.meta))
  parts = [parse_batch(raw.pop(name), layout.label_key, layout.num_classes, shown(name))
           for name in layout.files[split]]
  images = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
  labels = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
  return images, labels, label_names
