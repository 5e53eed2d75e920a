"""Event-camera data (CIFAR10-DVS, DVS128 Gesture, N-MNIST): folder sources, frame integration.

An event stream is four equally long 1-D arrays: t (timestamps, any monotone
unit), x (column, 0..W-1), y (row, 0..H-1), p (polarity; p > 0 is ON, else OFF).
:func:`integrate_events` counts events into T frames float32 [T, H, W, 2]:
axis 0 is time, the last axis is polarity (channel 0 = OFF, channel 1 = ON).
The pipeline batches these batch-major as [B, T, H, W, 2]; the model wants
time-major [T, B, H, W, 2], so the train step transposes (``x.swapaxes(0, 1)``).

Two folder layouts, both read by :func:`open_event_source`:

Packed (what ``python -m snnjax.data.prepare`` writes): one folder per split,
``folder/<split>/`` (``folder/all/`` for a dataset split per class at read
time), holding the split's events end to end, memory-mapped when read:

    t.npy, x.npy, y.npy, p.npy   1-D, all samples' events concatenated (sample order below)
    offsets.npy                  int64 [N + 1]: sample i is events offsets[i]:offsets[i+1]
    labels.npy                   int32 [N]
    samples.json                 {"class_names": [...], "names": ["<class>/<sample>.npz", ...]}

Reading a sample is four slices of memory-mapped arrays, about 10x faster
than opening its .npz (benchmarks/event_reading.py), and a split is 7 files
instead of one per sample (70,000 for N-MNIST), which shared file systems
prefer.

events_np (SpikingJelly's): one ``.npz`` per sample holding arrays t, x, y, p,
in a subfolder named after its class:

    folder/[events_np/][split/]<class name>/<sample>.npz

Labels are the class subfolders' indices in sorted name order, and samples are
in class order, then sorted by name, in both layouts. With split subfolders
(DVS128 Gesture, N-MNIST: train/, test/) the split picks one; without them
(CIFAR10-DVS) every class is split by :func:`split_files`.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

from snnjax.data import augment

SPLIT_BY = ("number", "time")
EVENT_ARRAYS = ("t", "x", "y", "p")
# Each event array's allowed numpy dtype kinds (b bool, i/u integer, f float), in words.
_DTYPES = {"t": ("iuf", "numbers"), "x": ("iu", "integers"), "y": ("iu", "integers"),
           "p": ("biuf", "numbers or booleans")}
# What np.load and NpzFile raise on a damaged file (zlib.error: a compressed member).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
                pickle.UnpicklingError)
_FIX = "re-create it from the original dataset file, or delete it"


def frame_indices(t: np.ndarray, num_frames: int, split_by: str = "number") -> np.ndarray:
  """Frame index in [0, T) of every event, T = ``num_frames``; events in time order.

  Both rules are SpikingJelly 2.0's ``cal_fixed_frames_number_segment_index``
  (used by ``integrate_events_by_fixed_frames_number`` and by its datasets'
  ``data_type='frame'`` with ``frames_number``), tests/test_event_framing.py.

  split_by="number": with N events and d = N // T, frame k holds events
  [k d, (k + 1) d) for k < T - 1 and the last frame holds [(T - 1) d, N), i.e.
  also the N mod T leftovers. If N < T all events land in the last frame.

  split_by="time": windows of the floored length dt = (t_{N-1} - t_0) // T
  (in t's own unit and dtype): frame k < T - 1 holds the events with
  t_0 + k dt <= t < t_0 + (k + 1) dt, and the last frame every event with
  t >= t_0 + (T - 1) dt, i.e. also the remainder of the span. Where
  SpikingJelly raises (a window without events, or dt == 0) snnjax gives empty
  frames; if dt == 0 (span shorter than T units) it splits the span
  proportionally, k = min(floor(T (t - t_0) / span), T - 1), and puts all
  events in frame 0 when the stream has a single timestamp.
  """
  n = t.shape[0]
  if split_by == "number":
    d = n // num_frames
    if d == 0:
      return np.full(n, num_frames - 1, np.int64)
    return np.minimum(np.arange(n) // d, num_frames - 1)
  if split_by == "time":
    if n == 0:
      return np.zeros(0, np.int64)
    t0 = t[0]
    dt = (t[-1] - t0) // num_frames
    if dt > 0:
      starts = t0 + dt * np.arange(1, num_frames).astype(t.dtype)
      return np.searchsorted(starts, t, side="right").astype(np.int64)
    span = float(t[-1] - t0)
    if span <= 0:
      return np.zeros(n, np.int64)
    k = np.floor((t - t0).astype(np.float64) * (num_frames / span)).astype(np.int64)
    return np.clip(k, 0, num_frames - 1)
  raise ValueError(f"split_by={split_by!r} unknown; allowed: {SPLIT_BY}.")


def integrate_events(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, *,
                     num_frames: int, height: int, width: int,
                     split_by: str = "number") -> np.ndarray:
  """Counts an event stream into frames.

  frames[k, y, x, c] = #{events i in frame k (see :func:`frame_indices`) at (y_i, x_i)
  with polarity channel c = 1[p_i > 0]}. Events are sorted by t first (stable)
  if they are not in time order. Every event is counted exactly once, so
  frames.sum() == N.

  Returns:
    float32 [num_frames, height, width, 2].
  """
  t, x, y, p = (np.asarray(a).reshape(-1) for a in (t, x, y, p))
  if not t.shape == x.shape == y.shape == p.shape:
    raise ValueError(f"event arrays differ in length: t {t.shape}, x {x.shape}, y {y.shape}, "
                     f"p {p.shape}.")
  if num_frames <= 0:
    raise ValueError(f"num_frames must be positive, got {num_frames}.")
  if t.size and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
    raise ValueError(f"events outside the {height}x{width} sensor: x in [{x.min()}, {x.max()}], "
                     f"y in [{y.min()}, {y.max()}]; set the sensor size (H, W) to match the data.")
  if t.size > 1 and np.any(t[1:] < t[:-1]):  # not np.diff: it wraps around for unsigned t
    order = np.argsort(t, kind="stable")
    t, x, y, p = t[order], x[order], y[order], p[order]
  k = frame_indices(t, num_frames, split_by)
  flat = ((k * height + y.astype(np.int64)) * width + x.astype(np.int64)) * 2 + (p > 0)
  counts = np.bincount(flat, minlength=num_frames * height * width * 2)
  return counts.reshape(num_frames, height, width, 2).astype(np.float32)


def downsample_frames(frames: np.ndarray, factor: int) -> np.ndarray:
  """Sum pooling of [..., H, W, C] over factor x factor windows (counts conserved).

  H and W must be divisible by ``factor``.
  """
  if factor == 1:
    return frames
  h, w, c = frames.shape[-3:]
  if h % factor or w % factor:
    raise ValueError(f"frame size {h}x{w} is not divisible by the downsampling factor {factor}.")
  pooled = frames.reshape(*frames.shape[:-3], h // factor, factor, w // factor, factor, c)
  return pooled.sum(axis=(-4, -2))


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Frames [..., H, W, C] -> [..., h, w, C], conserving the event count approximately.

  Exact sum pooling when H/h = W/w is an integer; otherwise the antialiased
  bilinear :func:`augment.resize` scaled by (H W) / (h w), so that a frame's sum
  is kept up to border effects.
  """
  h, w = frames.shape[-3:-1]
  if (h, w) == tuple(size):
    return frames
  if h % size[0] == 0 and w % size[1] == 0 and h // size[0] == w // size[1]:
    return downsample_frames(frames, h // size[0])
  scale = np.float32(h * w / (size[0] * size[1]))
  return augment.resize(frames.astype(np.float32), size) * scale


def split_files(files: Sequence[str], split: str, train_fraction: float) -> list[str]:
  """Deterministic per-class split: the first ceil(n * train_fraction) files (sorted) are "train".

  Any other split name gets the rest ("test"). This is SpikingJelly 2.0's
  ``split_to_train_test_set(train_fraction, dataset, num_classes,
  random_split=False)`` on a class's files in sorted name order (its
  ``math.ceil``, not rounding); its CIFAR10-DVS experiments use
  train_fraction = 0.9.
  """
  files = sorted(files)
  cut = int(np.ceil(len(files) * train_fraction))
  return files[:cut] if split == "train" else files[cut:]


def class_folders(root: str) -> tuple[str, ...]:
  """The sorted names of the sub-folders of ``root``."""
  return tuple(sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))))


def list_samples(root: str) -> tuple[tuple[str, ...], list[str], list[int]]:
  """(class names, .npz files, labels) of ROOT/<class>/*.npz: classes sorted, then files sorted."""
  class_names = class_folders(root)
  files, labels = [], []
  for label, name in enumerate(class_names):
    found = sorted(os.path.join(root, name, f) for f in os.listdir(os.path.join(root, name))
                   if f.endswith(".npz"))
    files += found
    labels += [label] * len(found)
  return class_names, files, labels


class EventFolderSource:
  """Random-access source over a folder of per-sample event ``.npz`` files (events_np).

  ``source[i]`` is ``{"t", "x", "y", "p": 1-D arrays, "label": int}``; see the
  module docstring for the layout. A file that cannot be read or holds wrong
  arrays raises a ValueError naming it (:func:`load_event_file`).

  Args:
    folder: dataset root (holding ``events_np/`` or the class / split folders).
    split: a split subfolder name if there are split subfolders; else "train"
      or "test" for the per-class split of :func:`split_files`.
    train_fraction: the train share of every class when there are no split
      subfolders.
  """

  def __init__(self, folder: str, split: str, train_fraction: float = 0.9):
    root = os.path.join(folder, "events_np")
    if not os.path.isdir(root):
      root = folder
    if not os.path.isdir(root):
      raise FileNotFoundError(f"event data folder {folder!r} does not exist; set "
                              f"`config.data.folder` to the folder that "
                              f"`python -m snnjax.data.prepare` wrote (or SpikingJelly's "
                              f"events_np folder).")
    subdirs = class_folders(root)
    has_splits = split in subdirs or {"train", "test"} <= set(subdirs)
    if has_splits:
      if split not in subdirs:
        raise ValueError(f"split {split!r} not found in {root!r}; it has {list(subdirs)}.")
      root = os.path.join(root, split)
    elif split not in ("train", "test"):
      raise ValueError(f"split {split!r} unknown for {root!r} (no split subfolders); "
                       f"allowed: 'train', 'test'.")
    self.class_names, files, labels = list_samples(root)
    if not self.class_names:
      raise FileNotFoundError(f"no class subfolders in {root!r}.")
    if not has_splits:
      keep = set(per_class_split(files, labels, split, train_fraction))
      labels = [label for f, label in zip(files, labels) if f in keep]
      files = [f for f in files if f in keep]
    self.files, self.labels = files, labels
    if not self.files:
      raise FileNotFoundError(f"no .npz event files for split {split!r} under {root!r}; "
                              "convert the original files with `python -m snnjax.data.prepare`.")

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict:
    example = load_event_file(self.files[index])
    example["label"] = self.labels[index]
    return example


def per_class_split(names: Sequence[str], labels: Sequence[int], split: str,
                    train_fraction: float) -> list[str]:
  """The names of ``split`` when every class is split by :func:`split_files`."""
  by_class: dict[int, list[str]] = {}
  for name, label in zip(names, labels):
    by_class.setdefault(label, []).append(name)
  return [n for label in sorted(by_class)
          for n in split_files(by_class[label], split, train_fraction)]


# ---------------------------------------------------------------------------
# The packed layout.

#: The pack of a dataset without split folders, split per class when read.
ALL_PACK = "all"
PACK_INDEX = "samples.json"


def is_pack(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, PACK_INDEX))


def _npz_member_header(path: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
  """(shape, dtype) of array ``key`` of an uncompressed or compressed .npz, data unread."""
  with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as f:
    version = np.lib.format.read_magic(f)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read(f)
  return shape, dtype


def write_pack(folder: str, root: str, files: Sequence[str], labels: Sequence[int],
               class_names: Sequence[str]) -> int:
  """Packs per-sample ``files`` (events_np .npz under ``root``) into ``folder``; returns events.

  Two passes: the .npz headers give every length and dtype (t as the widest of
  the samples'), then each array is filled in place through ``open_memmap``.
  ``samples.json`` is written last, so a folder without it is no pack.
  """
  os.makedirs(folder, exist_ok=True)
  headers = [{k: _npz_member_header(f, k) for k in EVENT_ARRAYS} for f in files]
  lengths = [h["t"][0][0] if h["t"][0] else 0 for h in headers]
  offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
  dtypes = {k: np.result_type(*(h[k][1] for h in headers)) for k in EVENT_ARRAYS}
  arrays = {k: np.lib.format.open_memmap(os.path.join(folder, f"{k}.npy"), mode="w+",
                                         dtype=dtypes[k], shape=(int(offsets[-1]),))
            for k in EVENT_ARRAYS}
  for i, path in enumerate(files):
    sample = load_event_file(path)
    for k in EVENT_ARRAYS:
      arrays[k][offsets[i]:offsets[i + 1]] = sample[k]
  for array in arrays.values():
    array.flush()
  del arrays
  np.save(os.path.join(folder, "offsets.npy"), offsets)
  np.save(os.path.join(folder, "labels.npy"), np.asarray(labels, np.int32))
  names = [os.path.relpath(f, root) for f in files]
  with open(os.path.join(folder, PACK_INDEX), "w") as f:
    json.dump({"class_names": list(class_names), "names": names}, f)
  return int(offsets[-1])


def _bad_pack(folder: str, problem: str) -> ValueError:
  return ValueError(f"packed event split {folder}: {problem}; rerun `python -m "
                    f"snnjax.data.prepare` into a new --out.")


class PackedEventSource:
  """Random-access source over a packed split (module docstring), memory-mapped.

  ``source[i]`` is ``{"t", "x", "y", "p": 1-D arrays, "label": int}``. The
  arrays are opened lazily in each process, so the source pickles small.

  Args:
    folder: the prepared dataset root (holding ``<split>/`` or ``all/``).
    split: a pack folder name, or "train" / "test" for the per-class split of
      the ``all`` pack by :func:`split_files`.
    train_fraction: the train share of every class for the ``all`` pack.
  """

  def __init__(self, folder: str, split: str, train_fraction: float = 0.9):
    pack = os.path.join(folder, split)
    split_per_class = not is_pack(pack)
    if split_per_class:
      pack = os.path.join(folder, ALL_PACK)
      if not is_pack(pack) or split not in ("train", "test"):
        packs = [d for d in class_folders(folder) if is_pack(os.path.join(folder, d))]
        raise ValueError(f"split {split!r} not found in {folder}; it has the packed splits "
                         f"{packs} ('train' and 'test' split an '{ALL_PACK}' pack per class).")
    self.folder = pack
    try:
      with open(os.path.join(pack, PACK_INDEX)) as f:
        index = json.load(f)
      self.class_names = tuple(index["class_names"])
      self.offsets = np.load(os.path.join(pack, "offsets.npy"))
      labels = np.load(os.path.join(pack, "labels.npy"))
    except (OSError, ValueError, KeyError, EOFError) as e:
      raise _bad_pack(pack, f"index unreadable ({_cause(e)})") from e
    names = index["names"]
    if not len(names) == len(labels) == len(self.offsets) - 1:
      raise _bad_pack(pack, f"{len(names)} names, {len(labels)} labels and "
                            f"{len(self.offsets) - 1} offsets disagree")
    rows = np.arange(len(names))
    if split_per_class:
      keep = set(per_class_split(names, labels.tolist(), split, train_fraction))
      rows = np.array([i for i, n in enumerate(names) if n in keep], np.int64)
    self.rows, self.labels = rows, labels[rows]
    self.names = [names[i] for i in rows]
    self._arrays = None
    self._open()  # check the arrays now; each worker process reopens them

  def _open(self) -> dict[str, np.ndarray]:
    if self._arrays is None:
      arrays = {}
      for k in EVENT_ARRAYS:
        path = os.path.join(self.folder, f"{k}.npy")
        try:
          arrays[k] = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:
          raise _bad_pack(self.folder, f"{k}.npy unreadable ({_cause(e)})") from e
        if arrays[k].ndim != 1 or len(arrays[k]) != self.offsets[-1]:
          raise _bad_pack(self.folder, f"{k}.npy has shape {arrays[k].shape}, expected "
                                       f"({self.offsets[-1]},)")
      self._arrays = arrays
    return self._arrays

  def __getstate__(self) -> dict:
    return {**self.__dict__, "_arrays": None}

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index: int) -> dict:
    row = self.rows[index]
    start, stop = self.offsets[row], self.offsets[row + 1]
    example = {k: np.array(a[start:stop]) for k, a in self._open().items()}
    example["label"] = int(self.labels[index])
    return example


def open_event_source(folder: str, split: str,
                      train_fraction: float = 0.9) -> PackedEventSource | EventFolderSource:
  """The packed source if ``folder`` holds packed splits, else the events_np one."""
  if os.path.isdir(folder) and any(is_pack(os.path.join(folder, d))
                                   for d in class_folders(folder)):
    return PackedEventSource(folder, split, train_fraction)
  return EventFolderSource(folder, split, train_fraction)


def _bad_file(path: str, problem: str) -> ValueError:
  return ValueError(f"event file {path}: {problem}; {_FIX}.")


def _cause(error: BaseException) -> str:
  """``"zlib.error: ..."``, ``"EOFError: ..."``: the error's type and message."""
  kind = type(error)
  name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
  return f"{name}: {error}"


def _open_problem(path: str, error: BaseException) -> str:
  """A few words on why np.load could not open ``path``, from its first bytes."""
  try:
    with open(path, "rb") as f:
      head = f.read(4)
  except OSError:
    return f"cannot be read ({_cause(error)})"
  if not head:
    return "empty file (0 bytes)"
  if head.startswith(b"PK"):
    return f"truncated or damaged .npz archive ({_cause(error)})"
  return "not a valid .npz archive (no zip signature)"


def _read_array(path: str, data: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
  try:
    array = data[key]
  except _READ_ERRORS as e:
    if "allow_pickle" in str(e):  # numpy refuses object arrays without pickle
      raise _bad_file(path, f"array {key!r} holds Python objects (dtype=object)") from e
    raise _bad_file(path, f"array {key!r} is truncated or damaged ({_cause(e)})") from e
  if array.ndim != 1:
    raise _bad_file(path, f"array {key!r} has shape {array.shape}, expected 1-D")
  kinds, expected = _DTYPES[key]
  if array.dtype.kind not in kinds:
    raise _bad_file(path, f"array {key!r} has dtype {array.dtype}, expected {expected}")
  return array


def load_event_file(path: str) -> dict:
  """The 1-D arrays t, x, y, p of one sample's ``.npz`` file, checked.

  Raises:
    ValueError naming ``path`` when the file is unreadable, empty, not an
    ``.npz`` archive, truncated or damaged, or its arrays are missing, not
    1-D, not numeric (x, y: integers) or differ in length.
  """
  try:
    data = np.load(path, allow_pickle=False)
  except _READ_ERRORS as e:
    raise _bad_file(path, _open_problem(path, e)) from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise _bad_file(path, "a single .npy array, not an .npz archive of t, x, y, p")
  with data:
    missing = set(EVENT_ARRAYS) - set(data.files)
    if missing:
      raise _bad_file(path, f"missing event arrays {sorted(missing)}; it has {data.files}")
    example = {k: _read_array(path, data, k) for k in EVENT_ARRAYS}
  lengths = {k: len(a) for k, a in example.items()}
  if len(set(lengths.values())) > 1:
    raise _bad_file(path, f"event arrays differ in length {lengths}")
  return example
