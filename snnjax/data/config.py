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
    encoding.kind         static images -> model input over T: "direct" (default: the image at
                          every step) | "rate" (Bernoulli spikes, probability gain * p) |
                          "latency" (one spike per pixel, brighter first); see snnjax.encoders.
                          The spike codes read intensities p in [0, 1]: mean/std are not applied.
    encoding.gain         rate: spike probability per step = min(1, gain * p).
    encoding.threshold    latency: pixels with p <= threshold never spike.
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

from snnjax import encoders, validation
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
  c.encoding = ml_collections.ConfigDict(dict(kind="direct", gain=1.0, threshold=0.01))
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


_check, _is_int = validation.check, validation.is_int


def _check_range(name: str, pair) -> None:
  _check(pair is not None and len(pair) == 2 and 0 < pair[0] <= pair[1],
         f"config.data.{name}={pair!r} must be (min, max) with 0 < min <= max.")


def validate_config(block: Mapping) -> None:
  """Raises ValueError naming the first bad value of a ``config.data`` block and what is allowed."""
  data = dict(block.to_dict() if hasattr(block, "to_dict") else block)
  validation.check_keys("data", data, default_config().to_dict(), "snnjax.data.default_config()")
  augment, event, synthetic = data["augment"], data["events"], data["synthetic"]
  validation.check_choice("data.source", data["source"], SOURCES)
  if data["source"] == "tfds":
    _check(data["name"] in sources.TFDS_NAMES,
           f"config.data.name={data['name']!r} unsupported for source 'tfds'; allowed: "
           f"{sources.TFDS_NAMES}.")
    _check(data["name"] != "imagenet2012" or data["image_size"] > 0,
           "imagenet2012 images vary in size: set config.data.image_size (e.g. 224).")
    for key in ("train_split", "eval_split"):
      split = data[key].split("[")[0] if isinstance(data[key], str) else data[key]
      _check(split in sources.TFDS_SPLITS[data["name"]],
             f"config.data.{key}={data[key]!r} is not a labelled split of tfds {data['name']}; "
             f"allowed: {sources.TFDS_SPLITS[data['name']]} (optionally sliced, e.g. "
             "'train[:90%]').")
  if data["source"] == "cifar_python":
    _check(data["name"] in sources.CIFAR_NAMES,
           f"config.data.name={data['name']!r} unsupported for source 'cifar_python'; allowed: "
           f"{sources.CIFAR_NAMES} (ImageNet and Fashion-MNIST have their own sources).")
    _check(isinstance(data["folder"], str) and data["folder"] != "",
           "config.data.folder must name the CIFAR tarball or its extracted folder, e.g. "
           f"{cifar.DEFAULT_PATHS['cifar10']!r} (download from {cifar.DOWNLOAD_URL}).")
  if data["source"] == "image_folder":
    _check(isinstance(data["folder"], str) and data["folder"] != "",
           "config.data.folder must name the image folder root holding train/ and val/, e.g. "
           f"{image_folder.DEFAULT_IMAGENET_FOLDER!r}.")
    _check(_is_int(data["image_size"]) and data["image_size"] > 0,
           "image folders hold images of varying size: set config.data.image_size (e.g. 224).")
  _check(_is_int(data["num_classes"]) and data["num_classes"] >= 0,
         f"config.data.num_classes={data['num_classes']!r} must be an int >= 0 "
         "(0 = from the source).")
  _check(_is_int(data["image_size"]) and data["image_size"] >= 0,
         f"config.data.image_size={data['image_size']!r} must be an int >= 0 "
         "(0 = source resolution).")
  _check(0 < data["eval_crop_fraction"] <= 1,
         f"config.data.eval_crop_fraction={data['eval_crop_fraction']!r} must be in (0, 1].")
  for key in ("mean", "std"):
    numbers = data[key] is not None and all(isinstance(v, (int, float)) for v in data[key])
    _check(data[key] is None or (len(data[key]) > 0 and numbers),
           f"config.data.{key}={data[key]!r} must be None or a tuple of per-channel floats.")
  _check((data["mean"] is None) == (data["std"] is None) and
         (data["mean"] is None or len(data["mean"]) == len(data["std"])),
         f"config.data.mean={data['mean']!r} and std={data['std']!r} must both be None or of "
         f"equal length.")
  _check(data["std"] is None or all(v > 0 for v in data["std"]),
         f"config.data.std={data['std']!r} must be positive.")
  validation.check_choice("data.normalization", data["normalization"], NORMALIZATIONS)
  if data["mean"] is None and data["source"] in NAMED_STATISTICS_SOURCES:
    name = sources.statistics_key(data["source"], data["name"])
    table = sources.statistics_table(data["normalization"])
    _check(name in table,
           f"config.data.normalization={data['normalization']!r} has no constants for "
           f"{data['source']}/{name}; known: {sorted(table)}. Set config.data.mean and .std "
           f"(per channel, 0..1 scale) or name a known dataset.")
  encoding = data["encoding"]
  validation.check_choice("data.encoding.kind", encoding["kind"], encoders.ENCODINGS)
  _check(encoding["kind"] == "direct" or data["source"] != "events",
         f"config.data.encoding.kind={encoding['kind']!r} encodes static images; event data are "
         "spikes already: use 'direct'.")
  validation.check_positive("data.encoding.gain", encoding["gain"])
  _check(0 <= encoding["threshold"] < 1,
         f"config.data.encoding.threshold={encoding['threshold']!r} must be in [0, 1).")
  validation.check_int("data.augment.crop_padding", augment["crop_padding"])
  validation.check_int("data.augment.cutout", augment["cutout"])
  validation.check_int("data.augment.roll", augment["roll"], 0, "(pixels)")
  validation.check_choice("data.augment.policy", augment["policy"], POLICIES)
  _check(augment["policy"] == "none" or data["source"] != "events",
         f"config.data.augment.policy={augment['policy']!r} works on images only; use "
         "'none' for events.")
  _check(_is_int(augment["randaugment_num_ops"]) and augment["randaugment_num_ops"] >= 0,
         f"config.data.augment.randaugment_num_ops={augment['randaugment_num_ops']!r} must be an "
         f"int >= 0.")
  _check(0 <= augment["randaugment_magnitude"] <= 10,
         f"config.data.augment.randaugment_magnitude={augment['randaugment_magnitude']!r} must be "
         f"in [0, 10].")
  _check_range("augment.rrc_scale", augment["rrc_scale"])
  _check(augment["rrc_scale"][1] <= 1,
         f"config.data.augment.rrc_scale={augment['rrc_scale']!r} must be <= 1.")
  _check_range("augment.rrc_ratio", augment["rrc_ratio"])
  validation.check_int("data.events.num_frames", event["num_frames"], 1)
  validation.check_choice("data.events.split_by", event["split_by"], events.SPLIT_BY)
  _check(len(event["sensor_size"]) == 2 and all(_is_int(v) and v > 0 for v in event["sensor_size"]),
         f"config.data.events.sensor_size={event['sensor_size']!r} must be (H, W) positive ints.")
  _check(0 < event["train_fraction"] < 1,
         f"config.data.events.train_fraction={event['train_fraction']!r} must be in (0, 1).")
  _check(len(synthetic["shape"]) >= 3 and all(_is_int(v) and v > 0 for v in synthetic["shape"]),
         f"config.data.synthetic.shape={synthetic['shape']!r} must be positive ints "
         "(..., H, W, C).")
  for key in ("num_train_examples", "num_eval_examples"):
    validation.check_int(f"data.synthetic.{key}", synthetic[key], 1)
  validation.check_int("data.synthetic.seed", synthetic["seed"])
  validation.check_int("data.worker_count", data["worker_count"])
  validation.check_int("data.read_threads", data["read_threads"])
  validation.check_int("data.prefetch_buffer_size", data["prefetch_buffer_size"])
