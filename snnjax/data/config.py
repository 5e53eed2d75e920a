"""The ``config.data`` block: defaults, documentation of every key, validation.

    source                "fashion_mnist_idx" | "cifar_python" | "image_folder" | "tfds" |
                          "events" | "synthetic". cifar_python reads CIFAR-10/100's official
                          python-version files (cifar-10-python.tar.gz / cifar-100-python.tar.gz
                          from https://www.cs.toronto.edu/~kriz/cifar.html, or the folders they
                          extract to) without TensorFlow; see snnjax.data.cifar. image_folder
                          reads FOLDER/SPLIT/CLASS/*.JPEG (ImageNet extracted, val sorted into
                          class folders), decoding in the grain workers; see
                          snnjax.data.image_folder.
    name                  the dataset: tfds: "fashion_mnist" | "cifar10" | "cifar100" |
                          "imagenet2012"; cifar_python: "cifar10" | "cifar100"; image_folder:
                          any, and a key of snnjax.data.sources.DATASETS ("imagenet2012") picks
                          the default mean/std (other names need mean and std). Ignored by the
                          other sources.
    folder                fashion_mnist_idx: folder of the IDX files; cifar_python: the tarball,
                          its extracted folder (cifar-10-batches-py/, cifar-100-python/) or a
                          folder holding either, "~" expanded (the CIFAR configs default to
                          ~/data/cifar-10-python.tar.gz, ~/data/cifar-100-python.tar.gz);
                          image_folder: the root holding train/ and val/ (the ImageNet configs
                          default to ~/data/imagenet);
                          events: dataset root (SpikingJelly's events_np layout, see
                          snnjax.data.events).
    data_dir              tfds data folder ("" = tfds's default, $TFDS_DATA_DIR or
                          ~/tensorflow_datasets). The dataset must be prepared there in the
                          ArrayRecord format; nothing is downloaded.
    train_split           split name used for training (read by the training loop); "NAME" or
                          tfds's "NAME[start:stop]" (fashion_mnist_idx, cifar_python, tfds).
    eval_split            split name used for evaluation (read by the training loop).
    num_classes           0 = take it from the source; > 0 must match the source (synthetic:
                          the number of classes to draw, 0 = 10).
    image_size            0 = keep the source's resolution (fixed-size datasets only); S > 0 =
                          output S x S: train random_resized_crop (or the eval transform if
                          that is off), eval resize shorter side to S / eval_crop_fraction and
                          centre crop. Events: resize the frames to S x S (sum pooling when the
                          sensor size is a multiple of S).
    eval_crop_fraction    centre-crop fraction of the eval transform (0.875: 256 -> 224).
    mean, std             per-channel normalisation on the 0..1 scale; None = from
                          ``normalization``. Not used for events (frames stay event counts).
    normalization         where mean/std come from when they are None: "dataset" (default:
                          the train split's own statistics, snnjax.data.sources.DATASETS;
                          synthetic: 0.5, 1/sqrt(12) for both) | "released_code" (the
                          constants of the papers' released code, sources.RELEASED_CODE_STATS:
                          CIFAR-10 std (0.2023, 0.1994, 0.2010)).
    augment.crop_padding  train: zero-pad by this many pixels and random-crop back (0 = off).
    augment.flip          train: random left-right flip with probability 1/2.
    augment.policy        train: "none" | "autoaugment_cifar10" | "randaugment" (images only).
    augment.randaugment_num_ops    RandAugment's N.
    augment.randaugment_magnitude  RandAugment's M on the 0..10 scale.
    augment.cutout        train: side of the Cutout square in pixels (0 = off).
    augment.roll          train: circular shift of H and W by independent integers uniform in
                          [-roll, roll] (torch.roll; the SML code's CIFAR10-DVS augmentation
                          uses 5), after flip; 0 = off.
    augment.random_resized_crop    train with image_size > 0: Inception crop (else the eval
                          transform).
    augment.rrc_scale     (min, max) area fraction of the random resized crop.
    augment.rrc_ratio     (min, max) aspect ratio w / h of the random resized crop.
    events.num_frames     T, frames per sample.
    events.split_by       "number" (equal event counts per frame) | "time" (equal durations).
    events.sensor_size    (H, W) of the event camera: (128, 128) for CIFAR10-DVS and DVS128
                          Gesture.
    events.train_fraction train share of every class when the folder has no split subfolders.
    synthetic.shape       per-example uint8 image shape, e.g. (32, 32, 3).
    synthetic.num_train_examples   size of the synthetic "train" split.
    synthetic.num_eval_examples    size of any other synthetic split.
    synthetic.seed        seed of the synthetic examples (not of the shuffling).
    worker_count          grain worker processes (0 = read in the main process).
    read_threads          grain reader threads per process (0 is fastest for in-memory data
                          such as the IDX source; raise it for tfds and event files on disk).
    prefetch_buffer_size  examples grain prefetches per process.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections
from ml_collections import config_dict

from snnjax.data import cifar, events, idx, image_folder, sources

SOURCES = ("fashion_mnist_idx", "cifar_python", "image_folder", "tfds", "events", "synthetic")
#: Sources whose default mean/std come from the statistics tables by ``name``.
NAMED_STATISTICS_SOURCES = ("fashion_mnist_idx", "cifar_python", "image_folder", "tfds")
POLICIES = ("none", "autoaugment_cifar10", "randaugment")
NORMALIZATIONS = ("dataset", "released_code")


def default_config() -> ml_collections.ConfigDict:
  """The ``config.data`` block with its defaults: Fashion-MNIST from the Debian IDX files.

  Every key is documented in this module's docstring.
  """
  c = ml_collections.ConfigDict()
  c.source = "fashion_mnist_idx"
  c.name = "fashion_mnist"
  c.folder = idx.FASHION_MNIST_FOLDER
  c.data_dir = ""
  c.train_split = "train"
  c.eval_split = "test"
  c.num_classes = 0
  c.image_size = 0
  c.eval_crop_fraction = 0.875
  c.mean = config_dict.placeholder(tuple)
  c.std = config_dict.placeholder(tuple)
  c.normalization = "dataset"
  c.augment = ml_collections.ConfigDict(dict(
      crop_padding=4, flip=True, policy="none", randaugment_num_ops=2,
      randaugment_magnitude=9.0, cutout=0, roll=0, random_resized_crop=False,
      rrc_scale=(0.08, 1.0), rrc_ratio=(3 / 4, 4 / 3)))
  c.events = ml_collections.ConfigDict(dict(
      num_frames=16, split_by="number", sensor_size=(128, 128), train_fraction=0.9))
  c.synthetic = ml_collections.ConfigDict(dict(
      shape=(32, 32, 3), num_train_examples=50000, num_eval_examples=10000, seed=0))
  c.worker_count = 0
  c.read_threads = 0
  c.prefetch_buffer_size = 64
  return c


def _flat_keys(tree: Mapping, prefix: str = "") -> set[str]:
  keys = set()
  for k, v in tree.items():
    if isinstance(v, Mapping):
      keys |= _flat_keys(v, f"{prefix}{k}.")
    else:
      keys.add(prefix + k)
  return keys


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(message)


def _is_int(x) -> bool:
  return isinstance(x, int) and not isinstance(x, bool)


def _check_range(name: str, pair) -> None:
  _check(pair is not None and len(pair) == 2 and 0 < pair[0] <= pair[1],
         f"config.data.{name}={pair!r} must be (min, max) with 0 < min <= max.")


def validate_config(c: Mapping) -> None:
  """Raises ValueError naming the first bad value of a ``config.data`` block and what is allowed."""
  c = dict(c.to_dict() if hasattr(c, "to_dict") else c)
  known = _flat_keys(default_config().to_dict())
  unknown = sorted(_flat_keys(c) - known)
  _check(not unknown, f"unknown config.data keys {unknown}; allowed: {sorted(known)}.")
  missing = sorted(known - _flat_keys(c))
  _check(not missing, f"config.data lacks keys {missing}; start from snnjax.data.default_config().")
  a, e, s = c["augment"], c["events"], c["synthetic"]
  _check(c["source"] in SOURCES, f"config.data.source={c['source']!r} unknown; allowed: {SOURCES}.")
  if c["source"] == "tfds":
    _check(c["name"] in sources.TFDS_NAMES,
           f"config.data.name={c['name']!r} unsupported for source 'tfds'; allowed: "
           f"{sources.TFDS_NAMES}.")
    _check(c["name"] != "imagenet2012" or c["image_size"] > 0,
           "imagenet2012 images vary in size: set config.data.image_size (e.g. 224).")
    for key in ("train_split", "eval_split"):
      split = c[key].split("[")[0] if isinstance(c[key], str) else c[key]
      _check(split in sources.TFDS_SPLITS[c["name"]],
             f"config.data.{key}={c[key]!r} is not a labelled split of tfds {c['name']}; "
             f"allowed: {sources.TFDS_SPLITS[c['name']]} (optionally sliced, e.g. 'train[:90%]').")
  if c["source"] == "cifar_python":
    _check(c["name"] in sources.CIFAR_NAMES,
           f"config.data.name={c['name']!r} unsupported for source 'cifar_python'; allowed: "
           f"{sources.CIFAR_NAMES} (ImageNet and Fashion-MNIST have their own sources).")
    _check(isinstance(c["folder"], str) and c["folder"] != "",
           "config.data.folder must name the CIFAR tarball or its extracted folder, e.g. "
           f"{cifar.DEFAULT_PATHS['cifar10']!r} (download from {cifar.DOWNLOAD_URL}).")
  if c["source"] == "image_folder":
    _check(isinstance(c["folder"], str) and c["folder"] != "",
           "config.data.folder must name the image folder root holding train/ and val/, e.g. "
           f"{image_folder.DEFAULT_IMAGENET_FOLDER!r}.")
    _check(_is_int(c["image_size"]) and c["image_size"] > 0,
           "image folders hold images of varying size: set config.data.image_size (e.g. 224).")
  _check(_is_int(c["num_classes"]) and c["num_classes"] >= 0,
         f"config.data.num_classes={c['num_classes']!r} must be an int >= 0 (0 = from the source).")
  _check(_is_int(c["image_size"]) and c["image_size"] >= 0,
         f"config.data.image_size={c['image_size']!r} must be an int >= 0 (0 = source resolution).")
  _check(0 < c["eval_crop_fraction"] <= 1,
         f"config.data.eval_crop_fraction={c['eval_crop_fraction']!r} must be in (0, 1].")
  for key in ("mean", "std"):
    _check(c[key] is None or (len(c[key]) > 0 and all(isinstance(v, (int, float)) for v in c[key])),
           f"config.data.{key}={c[key]!r} must be None or a tuple of per-channel floats.")
  _check((c["mean"] is None) == (c["std"] is None) and
         (c["mean"] is None or len(c["mean"]) == len(c["std"])),
         f"config.data.mean={c['mean']!r} and std={c['std']!r} must both be None or of "
         f"equal length.")
  _check(c["std"] is None or all(v > 0 for v in c["std"]),
         f"config.data.std={c['std']!r} must be positive.")
  _check(c["normalization"] in NORMALIZATIONS,
         f"config.data.normalization={c['normalization']!r} unknown; allowed: {NORMALIZATIONS}.")
  if c["mean"] is None and c["source"] in NAMED_STATISTICS_SOURCES:
    name = sources.statistics_key(c["source"], c["name"])
    table = sources.statistics_table(c["normalization"])
    _check(name in table,
           f"config.data.normalization={c['normalization']!r} has no constants for "
           f"{c['source']}/{name}; known: {sorted(table)}. Set config.data.mean and .std "
           f"(per channel, 0..1 scale) or name a known dataset.")
  _check(_is_int(a["crop_padding"]) and a["crop_padding"] >= 0,
         f"config.data.augment.crop_padding={a['crop_padding']!r} must be an int >= 0.")
  _check(_is_int(a["cutout"]) and a["cutout"] >= 0,
         f"config.data.augment.cutout={a['cutout']!r} must be an int >= 0.")
  _check(_is_int(a["roll"]) and a["roll"] >= 0,
         f"config.data.augment.roll={a['roll']!r} must be an int >= 0 (pixels).")
  _check(a["policy"] in POLICIES,
         f"config.data.augment.policy={a['policy']!r} unknown; allowed: {POLICIES}.")
  _check(a["policy"] == "none" or c["source"] != "events",
         f"config.data.augment.policy={a['policy']!r} works on images only; use 'none' for events.")
  _check(_is_int(a["randaugment_num_ops"]) and a["randaugment_num_ops"] >= 0,
         f"config.data.augment.randaugment_num_ops={a['randaugment_num_ops']!r} must be an "
         f"int >= 0.")
  _check(0 <= a["randaugment_magnitude"] <= 10,
         f"config.data.augment.randaugment_magnitude={a['randaugment_magnitude']!r} must be "
         f"in [0, 10].")
  _check_range("augment.rrc_scale", a["rrc_scale"])
  _check(a["rrc_scale"][1] <= 1, f"config.data.augment.rrc_scale={a['rrc_scale']!r} must be <= 1.")
  _check_range("augment.rrc_ratio", a["rrc_ratio"])
  _check(_is_int(e["num_frames"]) and e["num_frames"] > 0,
         f"config.data.events.num_frames={e['num_frames']!r} must be a positive int.")
  _check(e["split_by"] in events.SPLIT_BY,
         f"config.data.events.split_by={e['split_by']!r} unknown; allowed: {events.SPLIT_BY}.")
  _check(len(e["sensor_size"]) == 2 and all(_is_int(v) and v > 0 for v in e["sensor_size"]),
         f"config.data.events.sensor_size={e['sensor_size']!r} must be (H, W) positive ints.")
  _check(0 < e["train_fraction"] < 1,
         f"config.data.events.train_fraction={e['train_fraction']!r} must be in (0, 1).")
  _check(len(s["shape"]) >= 3 and all(_is_int(v) and v > 0 for v in s["shape"]),
         f"config.data.synthetic.shape={s['shape']!r} must be positive ints (..., H, W, C).")
  for key in ("num_train_examples", "num_eval_examples"):
    _check(_is_int(s[key]) and s[key] > 0,
           f"config.data.synthetic.{key}={s[key]!r} must be a positive int.")
  _check(_is_int(s["seed"]) and s["seed"] >= 0,
         f"config.data.synthetic.seed={s['seed']!r} must be an int >= 0.")
  _check(_is_int(c["worker_count"]) and c["worker_count"] >= 0,
         f"config.data.worker_count={c['worker_count']!r} must be an int >= 0.")
  _check(_is_int(c["read_threads"]) and c["read_threads"] >= 0,
         f"config.data.read_threads={c['read_threads']!r} must be an int >= 0.")
  _check(_is_int(c["prefetch_buffer_size"]) and c["prefetch_buffer_size"] >= 0,
         f"config.data.prefetch_buffer_size={c['prefetch_buffer_size']!r} must be an int >= 0.")
