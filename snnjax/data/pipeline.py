"""grain input pipelines: shard, shuffle, repeat, transform, batch; checkpointable.

Batches are dicts of NumPy arrays, batch-major:

    "image"  float32 [B, H, W, C] for images, [B, T, H, W, 2] for events
             (axis 1 is time: the train step transposes to the model's time-major
             [T, B, ...] with ``x.swapaxes(0, 1)``)
    "label"  int32 [B]
    "mask"   bool [B]: False marks padding examples of the last eval batches

B is the per-process batch, P the process count, G = P B the global batch.
Training pipeline (``train=True``):

    source -> shuffle (reshuffled every epoch) -> repeat -> augment (per-example RNG)
    -> this process's rows of every global batch -> batch B, drop_remainder

Global batch g is elements [g G, (g + 1) G) of the shuffled, augmented stream,
and process i reads (and augments) only its rows [g G + i B, g G + (i + 1) B).
Shuffle and augmentation depend on the seed and the element's global position
alone, so the global batches are the same for any process count: a job on 2
processes trains exactly like one on 1. Batches run across epoch boundaries;
``steps_per_epoch = N // G``.
Eval pipeline: the shard in order, padded with masked copies up to
``steps_per_epoch * B`` examples where steps_per_epoch = ceil(ceil(N / shard_count) / B)
is the same on every process, so multi-host eval loops stay in step.

Every random choice comes from the seed and the example's position, so the
iterator position (``get_state()``, a small JSON-able dict) fully determines
what follows: an iterator restored with ``set_state`` yields exactly the batches
an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np
from absl import flags

from snnjax.data import augment, config as config_lib, events, sources


# ---------------------------------------------------------------------------
# Per-example transforms: source example (+ rng) -> {"image", "label", "mask"}.


def _output(image: np.ndarray, example: Mapping) -> dict:
  return {"image": image, "label": np.int32(example["label"]),
          "mask": np.bool_(example.get("mask", True))}


@dataclasses.dataclass(frozen=True)
class ImageTransform:
  """uint8 [H, W, C] image -> normalised float32 [H', W', C].

  Train (``train=True``), in order: size (random_resized_crop to image_size, or
  the eval sizing) -> pad_and_random_crop(crop_padding) -> random_flip ->
  random_roll(roll) -> policy (autoaugment_cifar10 | randaugment) ->
  normalize(mean, std) -> cutout.
  Eval: resize_and_center_crop to image_size (if > 0) -> normalize.
  See :mod:`snnjax.data.augment` for each step.
  """

  train: bool
  mean: tuple[float, ...]
  std: tuple[float, ...]
  image_size: int = 0
  eval_crop_fraction: float = 0.875
  random_resized_crop: bool = False
  rrc_scale: tuple[float, float] = (0.08, 1.0)
  rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  crop_padding: int = 0
  flip: bool = False
  policy: str = "none"
  randaugment_num_ops: int = 2
  randaugment_magnitude: float = 9.0
  cutout: int = 0
  roll: int = 0

  def __call__(self, example: Mapping, rng: np.random.Generator | None = None) -> dict:
    image = np.asarray(example["image"])
    if not self.train:
      if self.image_size:
        image = augment.resize_and_center_crop(image, self.image_size, self.eval_crop_fraction)
      return _output(augment.normalize(image, self.mean, self.std), example)
    if self.image_size and self.random_resized_crop:
      image = augment.random_resized_crop(image, rng, self.image_size, self.rrc_scale,
                                          self.rrc_ratio)
    elif self.image_size:
      image = augment.resize_and_center_crop(image, self.image_size, self.eval_crop_fraction)
    image = augment.pad_and_random_crop(image, rng, self.crop_padding)
    if self.flip:
      image = augment.random_flip(image, rng)
    image = augment.random_roll(image, rng, self.roll)
    if self.policy == "autoaugment_cifar10":
      image = augment.autoaugment_cifar10(image, rng)
    elif self.policy == "randaugment":
      image = augment.randaugment(image, rng, self.randaugment_num_ops, self.randaugment_magnitude)
    image = augment.normalize(image, self.mean, self.std)
    return _output(augment.cutout(image, rng, self.cutout), example)


@dataclasses.dataclass(frozen=True)
class EventTransform:
  """Event stream -> float32 frames [T, H', W', 2] of event counts (not normalised).

  :func:`events.integrate_events` on the sensor grid, resize to image_size x
  image_size (if > 0, :func:`events.resize_frames`), then in training
  pad_and_random_crop, random_flip, random_roll and cutout, identical for all
  T frames.
  """

  train: bool
  num_frames: int
  sensor_size: tuple[int, int]
  split_by: str = "number"
  image_size: int = 0
  crop_padding: int = 0
  flip: bool = False
  cutout: int = 0
  roll: int = 0

  def __call__(self, example: Mapping, rng: np.random.Generator | None = None) -> dict:
    frames = events.integrate_events(
        example["t"], example["x"], example["y"], example["p"], num_frames=self.num_frames,
        height=self.sensor_size[0], width=self.sensor_size[1], split_by=self.split_by)
    if self.image_size:
      frames = events.resize_frames(frames, (self.image_size, self.image_size))
    if self.train:
      frames = augment.pad_and_random_crop(frames, rng, self.crop_padding)
      if self.flip:
        frames = augment.random_flip(frames, rng)
      frames = augment.random_roll(frames, rng, self.roll)
      frames = augment.cutout(frames, rng, self.cutout)
    return _output(frames, example)


def _eval_transform(transform: Callable, example: Mapping) -> dict:
  return transform(example, None)


# ---------------------------------------------------------------------------
# Sharding and the grain pipeline.


class _PaddedShard:
  """Eval shard: examples shard_index, shard_index + shard_count, ... of ``source``,
  then masked copies of the shard's first example up to ``length``."""

  def __init__(self, source: Sequence, shard_index: int, shard_count: int, length: int):
    self.source, self.length = source, length
    self.indices = range(shard_index, len(source), shard_count)

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> dict:
    real = index < len(self.indices)
    position = self.indices[index] if real else (self.indices[0] if self.indices else 0)
    example = dict(self.source[position])
    example["mask"] = real
    return example


def _seeds(seed: int) -> tuple[int, int]:
  """Shuffle and augmentation seeds (uint32) derived from ``seed``."""
  shuffle_seed, augment_seed = np.random.SeedSequence([seed]).generate_state(2)
  return int(shuffle_seed), int(augment_seed)


class _ProcessRows(grain.MapDataset):
  """One process's rows of every global batch: element k is parent[(k // B) G + i B + k % B]."""

  def __init__(self, parent: grain.MapDataset, batch_size: int, shard_index: int,
               shard_count: int):
    super().__init__(parent)
    self._batch, self._offset = batch_size, shard_index * batch_size
    self._global = batch_size * shard_count

  def __len__(self) -> int:
    return len(self._parent) // self._global * self._batch

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    global_batch, row = divmod(index, self._batch)
    return self._parent[global_batch * self._global + self._offset + row]

  def __str__(self) -> str:
    return f"_ProcessRows(batch={self._batch}, offset={self._offset}, global={self._global})"


def _check_sharding(batch_size, seed, shard_index, shard_count, num_epochs):
  for name, value, low in (("batch_size", batch_size, 1), ("shard_count", shard_count, 1),
                           ("seed", seed, 0)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
      raise ValueError(f"{name}={value!r} must be an int >= {low}.")
  if not isinstance(shard_index, (int, np.integer)) or not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index!r} must be an int in "
                     f"[0, shard_count={shard_count}).")
  if num_epochs is not None and (not isinstance(num_epochs, (int, np.integer)) or num_epochs < 1):
    raise ValueError(f"num_epochs={num_epochs!r} must be None (forever) or an int >= 1.")


def build_pipeline(source: Sequence, transform: Callable[[Mapping, Any], dict], *,
                   batch_size: int, seed: int, shard_index: int, shard_count: int,
                   train: bool, num_epochs: int | None = None, worker_count: int = 0,
                   read_threads: int = 0,
                   prefetch_buffer_size: int = 64) -> tuple[grain.IterDataset, int]:
  """Builds the grain pipeline of the module docstring over a random-access source.

  Args:
    source: ``len`` + ``__getitem__`` returning example dicts.
    transform: (example, rng) -> {"image", "label", "mask"}; eval calls it with rng None.
    batch_size: per-process batch B.
    seed: shuffle and augmentation seed (each shard derives its own from it).
    shard_index, shard_count: this process's shard, usually ``jax.process_index()``
      and ``jax.process_count()``.
    train: shuffle + augment + drop_remainder (True) or ordered, padded eval (False).
    num_epochs: passes over the shard; None = forever (train) or 1 (eval).
    worker_count: grain worker processes; 0 reads in this process. With workers,
      the batch order differs from worker_count=0 but is still deterministic.
    read_threads, prefetch_buffer_size: grain ReadOptions of each process.

  Returns:
    (dataset, steps_per_epoch): an ``IterDataset`` of batches and the number of
    batches per pass over the shard.
  """
  _check_sharding(batch_size, seed, shard_index, shard_count, num_epochs)
  n = len(source)
  shuffle_seed, augment_seed = _seeds(seed)
  if train:
    global_batch = batch_size * shard_count
    steps = n // global_batch
    if steps == 0:
      raise ValueError(f"the split's {n} examples hold no full global batch of "
                       f"{global_batch} ({shard_count} processes x batch_size={batch_size}).")
    ds = grain.MapDataset.source(source).shuffle(seed=shuffle_seed).repeat(num_epochs)
    ds = ds.random_map(transform, seed=augment_seed)
    ds = _ProcessRows(ds, batch_size, shard_index, shard_count)
  else:
    if n == 0:
      raise ValueError("the eval split is empty.")
    steps = math.ceil(math.ceil(n / shard_count) / batch_size)
    ds = grain.MapDataset.source(_PaddedShard(source, shard_index, shard_count, steps * batch_size))
    ds = ds.repeat(num_epochs or 1).map(functools.partial(_eval_transform, transform))
  options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_buffer_size)
  it = ds.to_iter_dataset(options).batch(batch_size, drop_remainder=train)
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():
      # grain's worker processes read absl flags; outside an absl app (pytest, notebooks)
      # nothing has parsed them, so take the defaults.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it, steps


# ---------------------------------------------------------------------------
# Entry point.


class DataPipeline:
  """What the training loop consumes: a checkpointable batch iterator plus facts.

  ``next(pipeline)`` gives the next batch dict of the one stream whose position
  ``get_state()`` returns (a JSON-able dict) and ``set_state(state)`` restores.

  Attributes:
    dataset: the grain ``IterDataset``; each ``iter(dataset)`` is a fresh pass
      from the start (what an evaluation iterates), apart from the stream.
    num_examples: examples in the whole split (all shards).
    steps_per_epoch: batches per pass over this process's shard.
    batch_size: the per-process batch B.
    image_shape: one example's "image" shape: (H, W, C) or (T, H, W, 2).
    num_classes: number of classes.
  """

  def __init__(self, dataset: grain.IterDataset, *, num_examples: int, steps_per_epoch: int,
               batch_size: int, image_shape: tuple[int, ...], num_classes: int):
    self.dataset = dataset
    self._iterator = iter(dataset)
    self.num_examples, self.steps_per_epoch = num_examples, steps_per_epoch
    self.batch_size, self.image_shape, self.num_classes = batch_size, image_shape, num_classes

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    return next(self._iterator)

  def get_state(self) -> dict:
    return self._iterator.get_state()

  def set_state(self, state: dict) -> None:
    self._iterator.set_state(state)


FOLDER_SOURCES = ("fashion_mnist_idx", "cifar_python", "image_folder", "events")


def create_source(data_config: Mapping, split: str) -> sources.SourceInfo:
  """The random-access source that ``data_config`` names, for one split."""
  c = data_config
  if c.source == "fashion_mnist_idx":
    info = sources.fashion_mnist_idx_source(c.folder, split)
  elif c.source == "cifar_python":
    info = sources.cifar_python_source(c.folder, c.name, split)
  elif c.source == "image_folder":
    info = sources.image_folder_source(c.folder, split)
  elif c.source == "tfds":
    info = sources.tfds_source(c.name, split, c.data_dir or None)
  elif c.source == "events":
    info = sources.event_folder_source(c.folder, split, c.events.train_fraction)
  else:
    s = c.synthetic
    n = s.num_train_examples if split == "train" else s.num_eval_examples
    info = sources.synthetic_source(n, tuple(s.shape), c.num_classes or 10, s.seed, split)
  if len(info.data) == 0:
    where = f" in config.data.folder={c.folder!r}" if c.source in FOLDER_SOURCES else ""
    hint = (f" (config.data.events.train_fraction={c.events.train_fraction} of every class "
            f"leaves it none when the split is made per class)" if c.source == "events" else "")
    raise ValueError(f"split {split!r} of the {c.source} source{where} has no examples{hint}.")
  if c.num_classes and c.num_classes != info.num_classes:
    raise ValueError(f"config.data.num_classes={c.num_classes} but the {c.source} source "
                     f"has {info.num_classes} classes.")
  return info


def _mean_std(c: Mapping, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
  if c.mean is not None:
    mean, std = tuple(c.mean), tuple(c.std)
  elif c.source == "synthetic":
    mean, std = (0.5,), (1 / math.sqrt(12),)
  else:
    stats = sources.statistics_table(c.normalization)[sources.statistics_key(c.source, c.name)]
    mean, std = stats["mean"], stats["std"]
  if len(mean) not in (1, channels):
    raise ValueError(f"config.data.mean={mean} has {len(mean)} values for {channels} channels.")
  return mean, std


def make_transform(data_config: Mapping, info: sources.SourceInfo,
                   train: bool) -> tuple[Callable, tuple[int, ...]]:
  """The per-example transform ``data_config`` describes, and its output image shape."""
  c, a = data_config, data_config.augment
  size = c.image_size
  if info.kind == "events":
    e = c.events
    transform = EventTransform(
        train=train, num_frames=e.num_frames, sensor_size=tuple(e.sensor_size),
        split_by=e.split_by, image_size=size, crop_padding=a.crop_padding, flip=a.flip,
        cutout=a.cutout, roll=a.roll)
    h, w = (size, size) if size else tuple(e.sensor_size)
    return transform, (e.num_frames, h, w, 2)
  if size:
    shape = (*info.image_shape[:-3], size, size, info.image_shape[-1])
  elif None in info.image_shape:
    raise ValueError(f"{c.name} images vary in size {info.image_shape}: set "
                     f"config.data.image_size.")
  else:
    shape = info.image_shape
  if a.policy != "none" and len(shape) != 3:
    raise ValueError(f"config.data.augment.policy={a.policy!r} needs [H, W, C] images, "
                     f"got examples of shape {shape}.")
  # The spike encoders (snnjax.encoders) read intensities in [0, 1]: no standardisation.
  mean, std = _mean_std(c, shape[-1]) if c.encoding.kind == "direct" else ((0.0,), (1.0,))
  transform = ImageTransform(
      train=train, mean=mean, std=std, image_size=size, eval_crop_fraction=c.eval_crop_fraction,
      random_resized_crop=a.random_resized_crop, rrc_scale=tuple(a.rrc_scale),
      rrc_ratio=tuple(a.rrc_ratio), crop_padding=a.crop_padding, flip=a.flip, policy=a.policy,
      randaugment_num_ops=a.randaugment_num_ops,
      randaugment_magnitude=a.randaugment_magnitude, cutout=a.cutout, roll=a.roll)
  return transform, tuple(shape)


def create_dataset(data_config: Mapping, split: str, **options: Any) -> DataPipeline:
  """The data layer's entry point: validates ``data_config``, then :func:`open_dataset`.

  Raises:
    ValueError: what :func:`snnjax.data.validate_config` rejects, then what
      :func:`open_dataset` does.
  """
  config_lib.validate_config(data_config)
  return open_dataset(data_config, split, **options)


def open_dataset(data_config: Mapping, split: str, *, batch_size: int, seed: int,
                 shard_index: int, shard_count: int, num_epochs: int | None = None,
                 train: bool | None = None) -> DataPipeline:
  """A sharded, batched, checkpointable pipeline over a validated data block.

  The training loop calls this after the config's one validation; other callers
  use :func:`create_dataset`, which validates first.

  Args:
    data_config: the ``config.data`` block (see :func:`default_config`), validated.
    split: split name, e.g. ``data_config.train_split`` or ``data_config.eval_split``.
    batch_size: per-process batch (global batch / process count).
    seed: shuffle and augmentation seed.
    shard_index, shard_count: ``jax.process_index()``, ``jax.process_count()``.
    num_epochs: None = forever when training, once for eval.
    train: training pipeline (shuffle, augment, drop_remainder) or eval; default:
      ``split`` starts with "train".

  Returns:
    A :class:`DataPipeline`.
  """
  if not isinstance(split, str) or not split:
    raise ValueError(f"split={split!r} must be a non-empty split name, e.g. 'train' or 'test'.")
  train = split.startswith("train") if train is None else train
  info = create_source(data_config, split)
  transform, image_shape = make_transform(data_config, info, train)
  dataset, steps = build_pipeline(
      info.data, transform, batch_size=batch_size, seed=seed, shard_index=shard_index,
      shard_count=shard_count, train=train, num_epochs=num_epochs,
      worker_count=data_config.worker_count, read_threads=data_config.read_threads,
      prefetch_buffer_size=data_config.prefetch_buffer_size)
  return DataPipeline(dataset, num_examples=len(info.data), steps_per_epoch=steps,
                      batch_size=batch_size, image_shape=image_shape,
                      num_classes=info.num_classes)
