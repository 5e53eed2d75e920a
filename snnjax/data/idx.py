"""IDX files (the MNIST / Fashion-MNIST container) and the Fashion-MNIST reader.

An IDX file is, all integers big-endian:

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 * d bytes the dimension sizes as uint32
    then        prod(sizes) elements, row-major

Files may be gzip-compressed (detected from the content, not the file name).
Debian's ``dataset-fashion-mnist`` installs the four Fashion-MNIST files,
gzipped, in :data:`FASHION_MNIST_FOLDER`.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

#: Where ``apt-get install dataset-fashion-mnist`` puts the files.
FASHION_MNIST_FOLDER = "/usr/share/datasets/fashion-mnist"

#: split -> (images file, labels file), without the optional ".gz".
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: Number of examples per split, used to check the files.
FASHION_MNIST_SIZES = {"train": 60000, "test": 10000}

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
  """Decodes the content of an (uncompressed) IDX file.

  Args:
    data: the raw bytes.
    name: shown in error messages (usually the file path).

  Returns:
    An array of the stored shape, in native byte order.

  Raises:
    ValueError: bad magic number, unknown element type, or a payload whose
      length does not match the header (truncated or trailing bytes).
  """
  if len(data) < 4:
    raise ValueError(f"{name}: not an IDX file, only {len(data)} bytes (the header alone is 4+).")
  if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(
        f"{name}: bad IDX magic number 0x{data[:4].hex()}; expected 0x0000TTDD with type "
        f"TT in {{{', '.join(f'{t:02x}' for t in _IDX_DTYPES)}}} and DD dimensions.")
  dtype = _IDX_DTYPES[data[2]]
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{name}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                     f"file has {len(data)}.")
  shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  got = len(data) - header
  if got != expected:
    problem = "truncated" if got < expected else "has trailing bytes"
    raise ValueError(f"{name}: IDX payload {problem}: shape {shape} of {dtype.name} needs "
                     f"{expected} bytes after the header, file has {got}.")
  return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gzip-compressed or not. See :func:`parse_idx`."""
  path = os.fspath(path)
  with open(path, "rb") as f:
    data = f.read()
  if data[:2] == _GZIP_MAGIC:
    try:
      data = gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:
      raise ValueError(f"{path}: corrupt or truncated gzip stream ({e}).") from e
  return parse_idx(data, path)


def _find(folder: str, stem: str) -> str:
  for candidate in (stem, stem + ".gz"):
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f"Fashion-MNIST file {stem}[.gz] not found in {folder!r}. Install it with "
      f"`apt-get install dataset-fashion-mnist` (files go to {FASHION_MNIST_FOLDER}) or set "
      f"`config.data.folder` to a folder holding the four IDX files.")


def load_fashion_mnist(folder: str = FASHION_MNIST_FOLDER,
                       split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """Reads one Fashion-MNIST split from IDX files.

  Args:
    folder: folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
    split: "train" (60000 examples) or "test" (10000).

  Returns:
    images: uint8 [N, 28, 28, 1], pixel values 0..255.
    labels: int32 [N], class ids 0..9.
  """
  folder = os.path.expanduser(folder)
  if split not in FASHION_MNIST_FILES:
    raise ValueError(f"Fashion-MNIST split {split!r} unknown; allowed: "
                     f"{sorted(FASHION_MNIST_FILES)}.")
  if not os.path.isdir(folder):
    raise FileNotFoundError(
        f"Fashion-MNIST folder {folder!r} does not exist. Install the data with "
        f"`apt-get install dataset-fashion-mnist` (files go to {FASHION_MNIST_FOLDER}) or set "
        f"`config.data.folder` to a folder holding the four IDX files.")
  image_file, label_file = (_find(folder, stem) for stem in FASHION_MNIST_FILES[split])
  images, labels = read_idx(image_file), read_idx(label_file)
  n = FASHION_MNIST_SIZES[split]
  if images.shape != (n, 28, 28) or images.dtype != np.uint8:
    raise ValueError(f"{image_file}: expected uint8 images of shape {(n, 28, 28)}, "
                     f"got {images.dtype} {images.shape}.")
  if labels.shape != (n,) or labels.dtype != np.uint8:
    raise ValueError(f"{label_file}: expected uint8 labels of shape {(n,)}, got "
                     f"{labels.dtype} {labels.shape}.")
  if labels.max() > 9:
    raise ValueError(f"{label_file}: label {labels.max()} out of range 0..9.")
  return images[..., None], labels.astype(np.int32)
