"""Readers for event-camera datasets in their original distributed binary files.

Pure NumPy (no PyTorch, no tonic). Every reader returns a dict of four equally
long 1-D arrays t, x, y, p whose values and dtypes are those SpikingJelly 2.0
decodes from the same file (the only difference: SpikingJelly's CIFAR10-DVS t
is a big-endian ``>u4`` view of the file, here it is native ``uint32``; the
values are identical). That keeps the framing in :mod:`snnjax.data.events`
bit-exact with SpikingJelly's.

Formats:

* CIFAR10-DVS (from "CIFAR10-DVS: An Event-Stream Dataset for Object
  Classification"): AEDAT 2.0 ``.aedat``, see :func:`read_cifar10dvs_aedat`.
* DVS128 Gesture (from "A Low Power, Fully Event-Based Gesture Recognition
  System"): AEDAT 3.1 ``user*_*.aedat`` + ``*_labels.csv`` +
  ``trials_to_{train,test}.txt``, see :func:`read_gesture_aedat`,
  :func:`read_gesture_labels`, :func:`split_gesture_recording`,
  :func:`read_gesture_trials`.
* N-MNIST (from "Converting Static Image Datasets to Spiking Neuromorphic
  Datasets Using Saccades"): 40-bit ATIS ``.bin`` records, see
  :func:`read_nmnist_bin`.

Every reader raises ``ValueError`` naming the file and what is wrong for an
empty, truncated or foreign file.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np

#: First header line of an AEDAT 2.0 file (jAER), up to the line end.
AEDAT2_MAGIC = b"#!AER-DAT2"
#: First header line of an AEDAT 3.x file, and the line that ends its header.
AEDAT3_MAGIC = b"#!AER-DAT3"
AEDAT3_END_HEADER = b"#!END-HEADER\r\n"
#: AEDAT 3.1 packet header size in bytes, and the polarity event type id.
AEDAT3_PACKET_HEADER = 28
AEDAT3_POLARITY_EVENT = 1
#: DVS128 Gesture classes are numbered 1..11 in the labels csv.
GESTURE_NUM_CLASSES = 11
#: N-MNIST sensor size (ATIS crop), pixels.
NMNIST_SIZE = 34


def _read_bytes(path: str | os.PathLike) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _events(t, x, y, p) -> dict[str, np.ndarray]:
  return {"t": t, "x": x, "y": y, "p": p}


def _check_magic(data: bytes, magic: bytes, format_name: str, name: str) -> None:
  """ValueError naming the file unless ``data`` starts with ``magic``."""
  if not data:
    raise ValueError(f"{name}: empty file, not an {format_name} file.")
  if not data.startswith(magic):
    raise ValueError(f"{name}: not an {format_name} file (it does not start with "
                     f"{magic.decode()!r} but with {data[:12]!r}).")


# ----------------------------------------------------------------------------- AEDAT 2.0


def aedat2_header_length(data: bytes, name: str = "<bytes>") -> int:
  """Byte length of an AEDAT 2.0 header: the leading lines starting with ``#``.

  A header line runs up to and including ``\\n``; it counts as header if it
  decodes as UTF-8 and, stripped of surrounding whitespace, starts with ``#``
  (SpikingJelly's rule, so both find the same first record). The first line
  must start with ``#!AER-DAT2``.

  Raises:
    ValueError: empty data, or a first line that is not an AEDAT 2.0 one.
  """
  _check_magic(data, AEDAT2_MAGIC, "AEDAT 2.0", name)
  pos = 0
  while pos < len(data):
    end = data.find(b"\n", pos)
    end = len(data) if end < 0 else end + 1
    try:
      text = data[pos:end].decode().strip()
    except UnicodeDecodeError:
      break
    if not text.startswith("#"):
      break
    pos = end
  return pos


def read_aedat2_records(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """(address, timestamp) uint32 arrays of an AEDAT 2.0 file.

  Format: ASCII header lines starting with ``#`` (see
  :func:`aedat2_header_length`), then 8-byte records, each a big-endian
  uint32 address followed by a big-endian uint32 timestamp (microseconds).

  Raises:
    ValueError: empty, foreign, or a body whose length is not a multiple of 8.
  """
  name = os.fspath(path)
  data = _read_bytes(path)
  start = aedat2_header_length(data, name)
  body = len(data) - start
  if body % 8:
    raise ValueError(f"{name}: truncated AEDAT 2.0 file: length {body} bytes after the "
                     f"{start}-byte header, not a multiple of 8 bytes (address + timestamp).")
  raw = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2)
  return raw[:, 0].astype(np.uint32), raw[:, 1].astype(np.uint32)


def read_cifar10dvs_aedat(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads one CIFAR10-DVS ``.aedat`` file (AEDAT 2.0, DVS128 sensor).

  Records as in :func:`read_aedat2_records`. Address bit fields (bit 0 = LSB):

      bit 0       polarity bit q (1 = OFF, 0 = ON)
      bits 1-7    sensor column c = (a & 0xFE) >> 1
      bits 8-14   sensor row    r = (a & 0x7F00) >> 8

  Decoded as SpikingJelly's CIFAR10DVS loader does (flipped and transposed):
  x = 127 - r, y = 127 - c, p = 1 - q. All records are kept (no filtering of
  the event-type bit 31).

  Returns:
    {"t": uint32 µs, "x": uint32 in [0, 127], "y": uint32 in [0, 127],
     "p": int64 in {0, 1}}.

  Raises:
    ValueError: as :func:`read_aedat2_records`.
  """
  addr, t = read_aedat2_records(path)
  col = (addr & 0xFE) >> 1
  row = (addr & 0x7F00) >> 8
  x = np.uint32(127) - row
  y = np.uint32(127) - col
  p = 1 - (addr & 1).astype(np.int64)
  return _events(t, x, y, p)


# ----------------------------------------------------------------------------- AEDAT 3.1


def aedat3_header_length(data: bytes, name: str = "<bytes>") -> int:
  """Byte length of an AEDAT 3.x header, up to and including ``#!END-HEADER\\r\\n``.

  Raises:
    ValueError: empty data, a first line not starting with ``#!AER-DAT3``, or
      no ``#!END-HEADER`` line among the leading ``#`` lines.
  """
  _check_magic(data, AEDAT3_MAGIC, "AEDAT 3.1", name)
  pos = 0
  while pos < len(data) and data.startswith(b"#", pos):
    end = data.find(b"\n", pos)
    end = len(data) if end < 0 else end + 1
    if data[pos:end] == AEDAT3_END_HEADER:
      return end
    pos = end
  raise ValueError(f"{name}: truncated AEDAT 3.1 header: no '#!END-HEADER\\r\\n' line.")


def read_gesture_aedat(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads the polarity events of one DVS128 Gesture recording (AEDAT 3.1).

  Format: ASCII header (see :func:`aedat3_header_length`), then packets, all
  little-endian. A packet is a 28-byte header

      bytes 0-1    uint16 eventType (1 = polarity)
      bytes 2-3    int16  eventSource
      bytes 4-7    uint32 eventSize (bytes per event; 8 for polarity)
      bytes 8-11   uint32 eventTSOffset
      bytes 12-15  uint32 eventTSOverflow
      bytes 16-19  uint32 eventCapacity
      bytes 20-23  uint32 eventNumber
      bytes 24-27  uint32 eventValid

  followed by eventCapacity * eventSize bytes of events. A polarity event is
  uint32 data + uint32 timestamp (µs); data bit fields: bit 0 valid, bit 1
  polarity, bits 2-16 y, bits 17-31 x. As SpikingJelly's ``load_aedat_v3``:
  every one of the eventCapacity events of a polarity packet is kept (the
  valid bit and eventNumber are ignored), t = timestamp | eventTSOverflow << 31,
  packets of other types are skipped.

  Returns:
    {"t", "x", "y", "p"}: int64 arrays (p in {0, 1}, 1 = ON), in file order.

  Raises:
    ValueError: empty, foreign, a truncated packet, or a polarity packet whose
      eventSize is below 8 or not a multiple of 4.
  """
  name = os.fspath(path)
  data = _read_bytes(path)
  pos = aedat3_header_length(data, name)
  words, overflows = [], []
  n = len(data)
  while pos < n:
    if n - pos < AEDAT3_PACKET_HEADER:
      raise ValueError(f"{name}: truncated AEDAT 3.1 file: {n - pos} bytes at offset {pos}, "
                       f"less than a {AEDAT3_PACKET_HEADER}-byte packet header.")
    e_type, _, e_size, _, e_overflow, e_capacity, _, _ = struct.unpack_from("<HhIIIIII", data,
                                                                           pos)
    pos += AEDAT3_PACKET_HEADER
    length = e_capacity * e_size
    if n - pos < length:
      raise ValueError(f"{name}: truncated AEDAT 3.1 packet at offset "
                       f"{pos - AEDAT3_PACKET_HEADER}: needs {length} bytes of events "
                       f"({e_capacity} x {e_size}), only {n - pos} left.")
    if e_type == AEDAT3_POLARITY_EVENT and e_capacity:
      if e_size < 8 or e_size % 4:
        raise ValueError(f"{name}: polarity packet at offset {pos - AEDAT3_PACKET_HEADER} "
                         f"has eventSize {e_size}; expected 8 (data + timestamp).")
      w = np.frombuffer(data, "<u4", length // 4, pos).reshape(e_capacity, e_size // 4)
      words.append(w[:, :2])
      overflows.append(np.full(e_capacity, e_overflow, np.int64))
    pos += length
  if not words:
    empty = np.zeros(0, np.int64)
    return _events(empty, empty.copy(), empty.copy(), empty.copy())
  w = np.concatenate(words).astype(np.int64)
  addr = w[:, 0]
  t = w[:, 1] | (np.concatenate(overflows) << 31)
  x = (addr >> 17) & 0x7FFF
  y = (addr >> 2) & 0x7FFF
  p = (addr >> 1) & 1
  return _events(t, x, y, p)


def read_gesture_labels(path: str | os.PathLike) -> np.ndarray:
  """Reads a DVS128 Gesture ``user*_*_labels.csv``.

  Format: one header line (``class,startTime_usec,endTime_usec``), then one
  comma-separated line per labelled interval: class in 1..11, start and end
  timestamps in µs (same clock as the recording's t).

  Returns:
    int64 [n, 3]: class (still 1-based), start, end per row, in file order.

  Raises:
    ValueError: unreadable numbers, not 3 columns, no rows, or a class
      outside 1..11 / a negative time.
  """
  name = os.fspath(path)
  try:
    with warnings.catch_warnings():   # "input contained no data": reported below
      warnings.simplefilter("ignore", UserWarning)
      rows = np.loadtxt(path, dtype=np.int64, delimiter=",", skiprows=1, ndmin=2)
  except ValueError as e:
    raise ValueError(f"{name}: not a DVS128 Gesture labels csv (class,startTime_usec,"
                     f"endTime_usec): {e}") from e
  if rows.shape[0] == 0:
    raise ValueError(f"{name}: labels csv has no rows after the header line.")
  if rows.shape[1] != 3:
    raise ValueError(f"{name}: labels csv has {rows.shape[1]} columns, expected 3 "
                     "(class, startTime_usec, endTime_usec).")
  bad = (rows[:, 0] < 1) | (rows[:, 0] > GESTURE_NUM_CLASSES)
  if bad.any():
    raise ValueError(f"{name}: class {rows[bad][0, 0]} outside 1..{GESTURE_NUM_CLASSES}.")
  if (rows[:, 1:] < 0).any():
    raise ValueError(f"{name}: negative timestamp in the labels csv.")
  return rows


def split_gesture_recording(events: dict[str, np.ndarray],
                            labels: np.ndarray) -> list[tuple[int, int, dict[str, np.ndarray]]]:
  """Cuts one recording into its labelled samples, as SpikingJelly does.

  Row i of ``labels`` (see :func:`read_gesture_labels`) gives one sample: the
  events with start <= t < end, label = class - 1 (0-based). Intervals may
  overlap; each row is cut independently.

  Returns:
    One (label, k, events) per row, in row order; k counts the earlier rows
    with the same label in this recording, so SpikingJelly's file for it is
    ``<label>/<recording stem>_<k>.npz``.
  """
  t = events["t"]
  samples = []
  for (label, k), (_, start, end) in zip(gesture_sample_keys(labels),
                                         np.asarray(labels).tolist()):
    mask = (t >= start) & (t < end)
    samples.append((label, k, {name: v[mask] for name, v in events.items()}))
  return samples


def gesture_sample_keys(labels: np.ndarray) -> list[tuple[int, int]]:
  """(0-based label, k) of each labels row, k counting the earlier rows with that label.

  The samples of :func:`split_gesture_recording`, named without reading the recording.
  """
  counts = [0] * GESTURE_NUM_CLASSES
  keys = []
  for cls in np.asarray(labels)[:, 0].tolist():
    label = int(cls) - 1
    keys.append((label, counts[label]))
    counts[label] += 1
  return keys


def gesture_labels_path(recording: str | os.PathLike) -> str:
  """``user01_led.aedat`` -> ``user01_led_labels.csv`` beside it."""
  return os.fspath(recording)[:-len(".aedat")] + "_labels.csv"


def read_gesture_trials(path: str | os.PathLike) -> list[str]:
  """Reads ``trials_to_train.txt`` / ``trials_to_test.txt``: one ``.aedat`` file
  name per line (e.g. ``user01_fluorescent.aedat``); blank lines are skipped,
  surrounding whitespace stripped.

  Raises:
    ValueError: not text, or a line that does not name an ``.aedat`` file.
  """
  name = os.fspath(path)
  try:
    text = _read_bytes(path).decode()
  except UnicodeDecodeError as e:
    raise ValueError(f"{name}: not a trials list (not text).") from e
  trials = [line.strip() for line in text.splitlines() if line.strip()]
  for trial in trials:
    if not trial.endswith(".aedat"):
      raise ValueError(f"{name}: line {trial[:40]!r} does not name an .aedat file.")
  return trials


# ----------------------------------------------------------------------------- N-MNIST


def read_nmnist_bin(path: str | os.PathLike, *, width: int | None = NMNIST_SIZE,
                    height: int | None = NMNIST_SIZE) -> dict[str, np.ndarray]:
  """Reads one N-MNIST ``.bin`` file (ATIS 40-bit records, no header).

  Each event is 5 bytes, i.e. 40 bits, most significant first:

      bits 39-32  x (pixels)
      bits 31-24  y (pixels)
      bit  23     polarity (1 = ON, 0 = OFF)
      bits 22-0   timestamp (µs)

  Decoded as SpikingJelly's ``load_ATIS_bin`` (no handling of the timestamp
  overflow events of the original MATLAB reader; N-MNIST samples are ~0.3 s,
  far below the 2^23 µs wrap).

  Args:
    width, height: x >= width or y >= height raises (a foreign file); None
      skips that check (other ATIS datasets, e.g. N-Caltech101).

  Returns:
    {"t", "x", "y", "p"}: uint32 arrays.

  Raises:
    ValueError: empty, length not a multiple of 5, or coordinates outside
      the sensor.
  """
  name = os.fspath(path)
  data = _read_bytes(path)
  if not data:
    raise ValueError(f"{name}: empty file, not an N-MNIST .bin file.")
  if len(data) % 5:
    raise ValueError(f"{name}: truncated or not an N-MNIST .bin file: length {len(data)} "
                     "bytes, not a multiple of 5 bytes (40-bit events).")
  b = np.frombuffer(data, np.uint8).reshape(-1, 5).astype(np.uint32)
  x = b[:, 0].copy()
  y = b[:, 1].copy()
  p = b[:, 2] >> 7
  t = ((b[:, 2] & 127) << 16) | (b[:, 3] << 8) | b[:, 4]
  for axis, v, size in (("x", x, width), ("y", y, height)):
    if size is not None and v.size and int(v.max()) >= size:
      raise ValueError(f"{name}: {axis} = {int(v.max())} is not below {size}, outside the "
                       "N-MNIST sensor: not an N-MNIST .bin file? (width=None, height=None "
                       "skip this check for other ATIS datasets)")
  return _events(t, x, y, p)
