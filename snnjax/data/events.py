"""Event-camera data (CIFAR10-DVS, DVS128 Gesture): a folder source and frame integration.

An event stream is four equally long 1-D arrays: t (timestamps, any monotone
unit), x (column, 0..W-1), y (row, 0..H-1), p (polarity; p > 0 is ON, else OFF).
:func:`integrate_events` counts events into T frames float32 [T, H, W, 2]:
axis 0 is time, the last axis is polarity (channel 0 = OFF, channel 1 = ON).
The pipeline batches these batch-major as [B, T, H, W, 2]; the model wants
time-major [T, B, H, W, 2], so the train step transposes (``x.swapaxes(0, 1)``).

Folder layout (SpikingJelly's ``events_np``): one ``.npz`` per sample holding
arrays t, x, y, p, in a subfolder named after its class:

    folder/[events_np/][split/]<class name>/<sample>.npz

Labels are the class subfolders' indices in sorted name order. With split
subfolders (DVS128 Gesture: train/, test/) the split picks one; without them
(CIFAR10-DVS) every class is split by :func:`split_files`.
"""

from __future__ import annotations

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


class EventFolderSource:
  """Random-access source over a folder of per-sample event ``.npz`` files.

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
                              f"`config.data.folder` to the folder holding the class folders "
                              f"of .npz files (SpikingJelly's events_np layout).")
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    has_splits = split in subdirs or {"train", "test"} <= set(subdirs)
    if has_splits:
      if split not in subdirs:
        raise ValueError(f"split {split!r} not found in {root!r}; it has {subdirs}.")
      root = os.path.join(root, split)
      subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    elif split not in ("train", "test"):
      raise ValueError(f"split {split!r} unknown for {root!r} (no split subfolders); "
                       f"allowed: 'train', 'test'.")
    if not subdirs:
      raise FileNotFoundError(f"no class subfolders in {root!r}.")
    self.class_names = tuple(subdirs)
    self.files: list[str] = []
    self.labels: list[int] = []
    for label, name in enumerate(subdirs):
      files = [os.path.join(root, name, f) for f in os.listdir(os.path.join(root, name))
               if f.endswith(".npz")]
      if not has_splits:
        files = split_files(files, split, train_fraction)
      files = sorted(files)
      self.files += files
      self.labels += [label] * len(files)
    if not self.files:
      raise FileNotFoundError(f"no .npz event files for split {split!r} under {root!r}.")

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict:
    example = load_event_file(self.files[index])
    example["label"] = self.labels[index]
    return example


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
