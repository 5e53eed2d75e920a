"""Image classification datasets stored as one folder per class: ROOT/SPLIT/CLASS/IMAGE.

ImageNet as most GPU users keep it (ILSVRC2012 extracted, the validation images
sorted into class folders):

    ROOT/train/n01440764/n01440764_10026.JPEG ...   1,281,167 images, 1000 folders
    ROOT/val/n01440764/ILSVRC2012_val_00000293.JPEG ...   50,000 images

Labels are the positions of the class folder names of ROOT/train in sorted
order, for every split: the order torchvision's ImageFolder and tfds's
imagenet2012 use (sorted WordNet ids), and a split that lacks a class folder
keeps the labels of the others. Images are decoded (Pillow; grey, CMYK and
palette images converted to RGB) when an example is read, so in the pipeline
the decoding runs in grain's worker processes with the augmentation.

A split's examples are the files with an image extension (case-insensitive)
in a fixed pseudo-random order: the sorted file list permuted by
``np.random.default_rng(0)``, as tfds stores its shards shuffled, so a slice
such as "val[:1000]" draws from all classes instead of the first two.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
#: The folder whose class folders define the labels of every split.
LABELS_SPLIT = "train"
DEFAULT_IMAGENET_FOLDER = "~/data/imagenet"


def _is_image(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(split_dir: pathlib.Path) -> tuple[str, ...]:
  """The sorted names of the sub-folders of ``split_dir``."""
  with os.scandir(split_dir) as entries:
    return tuple(sorted(e.name for e in entries if e.is_dir()))


def _flat_images(split_dir: pathlib.Path) -> int:
  with os.scandir(split_dir) as entries:
    return sum(1 for e in entries if e.is_file() and _is_image(e.name))


def _missing_split(root: pathlib.Path, split: str) -> str:
  present = class_folders(root) if root.is_dir() else ()
  return (f"{root / split} not found: config.data.folder must hold one folder per split "
          f"({LABELS_SPLIT}/, val/, ...) of class folders of images; {root} holds "
          f"{list(present)[:6] or 'no folders'}.")


def label_names(root: pathlib.Path, split: str) -> tuple[str, ...]:
  """The class names in label order: the class folders of ROOT/train (else of ROOT/split)."""
  if not root.is_dir():
    raise FileNotFoundError(f"{root} not found: config.data.folder must name the dataset's root, "
                            f"which holds {LABELS_SPLIT}/ and val/ of class folders of images.")
  labels_dir = root / LABELS_SPLIT
  if not labels_dir.is_dir() and not (root / split).is_dir():
    raise FileNotFoundError(_missing_split(root, split))
  names = class_folders(labels_dir if labels_dir.is_dir() else root / split)
  if not names:
    raise FileNotFoundError(f"{labels_dir if labels_dir.is_dir() else root / split} has no class "
                            f"folders: each class's images go in a folder of their own.")
  return names


def list_split(root: pathlib.Path, split: str,
               names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
  """(relative paths as bytes [N], labels int32 [N]) of ROOT/split in the module's order."""
  split_dir = root / split
  if not split_dir.is_dir():
    raise FileNotFoundError(_missing_split(root, split))
  present = class_folders(split_dir)
  if not present:
    flat = _flat_images(split_dir)
    raise FileNotFoundError(
        f"{split_dir} holds {flat} images but no class folders: sort them into "
        f"{split_dir}/<class>/ (for ImageNet's val images, by the validation ground truth, "
        f"e.g. with the widely used valprep.sh).")
  unknown = sorted(set(present) - set(names))
  if unknown:
    raise ValueError(f"{split_dir} has class folders {unknown[:5]} that {root / LABELS_SPLIT} "
                     f"lacks; every split must use the classes of {LABELS_SPLIT}/.")
  label_of = {name: i for i, name in enumerate(names)}
  paths, labels = [], []
  for name in present:
    with os.scandir(split_dir / name) as entries:
      files = sorted(e.name for e in entries if _is_image(e.name))
    paths += [os.fsencode(f"{name}/{f}") for f in files]
    labels += [label_of[name]] * len(files)
  if not paths:
    raise FileNotFoundError(f"{split_dir}'s class folders hold no images ({IMAGE_EXTENSIONS}).")
  order = np.random.default_rng(0).permutation(len(paths))
  return np.array(paths)[order], np.array(labels, np.int32)[order]


def decode_image(path: str | os.PathLike) -> np.ndarray:
  """The image file at ``path`` as uint8 [H, W, 3] RGB."""
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f"cannot decode image {path}: {e}; replace or remove the file.") from e


class ImageFolderSource:
  """ROOT/SPLIT/CLASS/IMAGE files as a random-access source of decoded images.

  Example i is ``{"image": uint8 [H, W, 3], "label": int}``; sizes vary.
  Holds only the relative paths (bytes), so it pickles small enough to send
  to every grain worker.
  """

  def __init__(self, root: str | os.PathLike, split: str):
    self.root = pathlib.Path(root).expanduser()
    self.split = split
    self.class_names = label_names(self.root, split)
    self.paths, self.labels = list_split(self.root, split, self.class_names)

  def __len__(self) -> int:
    return len(self.paths)

  def path(self, index: int) -> pathlib.Path:
    return self.root / self.split / os.fsdecode(self.paths[index])

  def __getitem__(self, index: int) -> dict:
    return {"image": decode_image(self.path(index)), "label": int(self.labels[index])}
