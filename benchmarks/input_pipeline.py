"""ImageNet input pipeline: JPEG decode + RandomResizedCrop 224 + flip + normalise, per core and
with N workers, against what the training step of imagenet_resnet34_sml consumes.

1. Writes an image folder of synthetic JPEGs in ImageNet's layout (``--classes`` x
   ``--per_class`` files, 500x375 or 375x500, ImageNet's most common sizes; smooth
   random content plus pixel noise, quality 90; the mean file size is reported beside
   ImageNet train's 108 KB = 138 GB / 1,281,167 files).
2. Stages, one image at a time in this process (median ms): decode (Pillow), snnjax's
   RandomResizedCrop (snnjax.data.augment; Pillow's resize), flip + normalise, and for
   reference Pillow's crop + bilinear resize (torchvision's path for PIL images).
3. Pipelines, images/s over ``--batches`` batches of ``--batch`` after the first 2 N + 1
   (N workers' start-up excluded; the files sit in the page cache: CPU work, not disk):
     snnjax   snnjax.data.create_dataset with the recipe's data block, worker_count in
              ``--workers`` (0 = decode in this process, read_threads threads)
     torch    torch.utils.data.DataLoader over the same files, Pillow decode, crop and
              bilinear resize, flip, normalise (torchvision's PIL path, written out:
              torchvision is not installable beside this torch), num_workers in ``--workers``
4. Consumption: the training step's GFLOP per image from XLA's cost analysis (no
   compilation) for imagenet_resnet34_sml and for the ResNet-19 of
   train_throughput.py, whose measured GPU images/s (``--resnet19_gpu_images_per_s``,
   docs/BENCHMARKS.md) scales to an estimate for ImageNet; ``--measure_step`` times
   the real ImageNet step on this machine's default device instead.

    python benchmarks/input_pipeline.py                    # ~1 min on 2 cores
    python benchmarks/input_pipeline.py --smoke            # ~40 s
    python benchmarks/input_pipeline.py --measure_step --step_batch 64   # on a GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from snnjax import data  # noqa: E402
from snnjax.data import augment, image_folder  # noqa: E402

CONFIG = REPO / "configs" / "imagenet_resnet34_sml.py"
IMAGENET_TRAIN_MEAN_KB = 138e9 / 1_281_167 / 1e3
DEFAULT_OUT = HERE / "results" / "input_pipeline.json"


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--classes", type=int, default=8)
  p.add_argument("--per_class", type=int, default=48)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--batches", type=int, default=30, help="timed batches per pipeline row")
  p.add_argument("--workers", default="0,1,2", help="comma list of worker counts")
  p.add_argument("--repeats", type=int, default=3, help="runs of every pipeline row (median)")
  p.add_argument("--stage_images", type=int, default=60)
  p.add_argument("--noise", type=float, default=24.0,
                 help="pixel noise std of the test images (24: mean file ~ ImageNet train's)")
  p.add_argument("--resnet19_gpu_images_per_s", type=float, default=2506.0,
                 help="measured ResNet-19 step rate (docs/BENCHMARKS.md, H100 float32 B=64)")
  p.add_argument("--measure_step", action="store_true",
                 help="also time the real imagenet_resnet34_sml step on the default device")
  p.add_argument("--step_batch", type=int, default=8)
  p.add_argument("--smoke", action="store_true", help="tiny sizes, for a quick check")
  p.add_argument("--keep", default="", help="write the image folder here and keep it")
  p.add_argument("--out", default=str(DEFAULT_OUT))
  args = p.parse_args(argv)
  if args.smoke:
    args.classes, args.per_class, args.batch, args.batches = 2, 16, 8, 2
    args.stage_images, args.workers, args.repeats = 8, "0,1", 1
  return args


# ---------------------------------------------------------------------------
# The image folder.


def synthetic_photo(rng: np.random.Generator, height: int, width: int, noise: float) -> np.ndarray:
  """Smooth colour field (bicubic upsampling of 12x9 random pixels) plus Gaussian pixel noise."""
  coarse = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
  smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
  return np.clip(smooth + rng.normal(0, noise, smooth.shape), 0, 255).astype(np.uint8)


def write_folder(root: pathlib.Path, classes: int, per_class: int, noise: float) -> float:
  """ROOT/train/<class>/*.JPEG; returns the mean file size in KB."""
  rng = np.random.default_rng(0)
  sizes = []
  for c in range(classes):
    folder = root / "train" / f"n{c:08d}"
    folder.mkdir(parents=True)
    for i in range(per_class):
      height, width = (375, 500) if rng.random() < 0.75 else (500, 375)
      path = folder / f"n{c:08d}_{i}.JPEG"
      Image.fromarray(synthetic_photo(rng, height, width, noise)).save(path, quality=90)
      sizes.append(path.stat().st_size)
  return float(np.mean(sizes)) / 1e3


# ---------------------------------------------------------------------------
# Stages and pipelines.


def _median_ms(fn, inputs) -> float:
  times = []
  for x in inputs:
    t = time.perf_counter()
    fn(x)
    times.append(time.perf_counter() - t)
  return 1e3 * statistics.median(times)


def stage_times(paths: list[pathlib.Path], mean, std) -> dict[str, float]:
  rng = np.random.default_rng(0)
  images = [image_folder.decode_image(p) for p in paths]
  crops = [augment.random_resized_crop(x, rng, 224) for x in images]

  def pil_crop_resize(path):
    with Image.open(path) as image:
      w, h = image.size
      image.convert("RGB").resize((224, 224), Image.BILINEAR, box=(w * 0.1, h * 0.1, w * 0.9,
                                                                    h * 0.9))

  return {
      "decode": _median_ms(image_folder.decode_image, paths),
      "random_resized_crop 224 (snnjax.data.augment)": _median_ms(
          lambda x: augment.random_resized_crop(x, rng, 224), images),
      "flip + normalize": _median_ms(
          lambda x: augment.normalize(augment.random_flip(x, rng), mean, std), crops),
      "decode + crop + resize (Pillow, reference)": _median_ms(pil_crop_resize, paths),
  }


def _rate(batches, batch: int, count: int, workers: int) -> float:
  for _ in range(2 * workers + 1):  # start-up: every worker has delivered before the clock starts
    next(batches)
  t = time.perf_counter()
  for _ in range(count):
    next(batches)
  return count * batch / (time.perf_counter() - t)


def snnjax_rate(config, root: pathlib.Path, workers: int, batch: int, count: int) -> float:
  c = config.data.copy_and_resolve_references()
  c.update(dict(folder=str(root), worker_count=workers,
                read_threads=0 if workers else len(os.sched_getaffinity(0))))
  pipeline = data.create_dataset(c, "train", batch_size=batch, seed=0, shard_index=0,
                                 shard_count=1)
  return _rate(iter(pipeline), batch, count, workers)


class TorchFolder:
  """torchvision's ImageFolder + RandomResizedCrop(224) + RandomHorizontalFlip + Normalize for
  PIL images, written out (the crop box is drawn by snnjax's rules; the cost is Pillow's)."""

  def __init__(self, root: pathlib.Path, mean, std):
    source = image_folder.ImageFolderSource(root, "train")
    self.paths = [source.path(i) for i in range(len(source))]
    self.labels = source.labels
    self.mean, self.std = np.float32(mean) * 255, np.float32(std) * 255

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    import torch
    rng = np.random.default_rng(index)
    with Image.open(self.paths[index]) as image:
      image = image.convert("RGB")
    w, h = image.size
    area = rng.uniform(0.08, 1.0) * w * h
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw, ch = min(w, int(round(np.sqrt(area * ratio)))), min(h, int(round(np.sqrt(area / ratio))))
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    image = image.resize((224, 224), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
      image = image.transpose(Image.FLIP_LEFT_RIGHT)
    x = (np.asarray(image, np.float32) - self.mean) / self.std
    return torch.from_numpy(x.transpose(2, 0, 1)), int(self.labels[index])


def torch_rate(root: pathlib.Path, mean, std, workers: int, batch: int, count: int) -> float:
  import torch
  torch.set_num_threads(1)
  loader = torch.utils.data.DataLoader(TorchFolder(root, mean, std), batch_size=batch,
                                       shuffle=True, num_workers=workers, drop_last=True,
                                       persistent_workers=workers > 0)

  def forever():
    while True:
      yield from loader

  return _rate(forever(), batch, count, workers)


# ---------------------------------------------------------------------------
# Consumption.


def load_config(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _step(config, image_size: int, num_classes: int, batch: int):
  import jax
  import jax.numpy as jnp
  from snnjax.train import config as config_lib, optim, steps
  model = config_lib.build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config.optimizer, steps_per_epoch=100, total_steps=1000)
  images = jnp.zeros((batch, image_size, image_size, 3), jnp.float32)
  labels = jnp.zeros((batch,), jnp.int32)
  init = jax.jit(lambda key: steps.init_state(model, tx, key, images, lipschitz=False))
  step = jax.jit(steps.make_train_step(model, tx, config, schedule), donate_argnums=0)
  return init, step, {"image": images, "label": labels}


def step_gflop_per_image(config, image_size: int, num_classes: int) -> float:
  """XLA's flop count of one training step (forward, backward, update) per image, in GFLOP."""
  import jax
  init, step, batch = _step(config, image_size, num_classes, batch=2)
  state = jax.eval_shape(init, jax.random.key(0))
  return step.lower(state, batch).cost_analysis()["flops"] / 2 / 1e9


def resnet19_benchmark_config():
  sys.path.insert(0, str(HERE / "peers"))
  import harness
  import snnjax_step
  return snnjax_step.make_config(harness.Spec(framework="snnjax", width=1.0, T=4, batch=2))


def measured_step_rate(config, batch: int, steps: int = 10) -> dict:
  import jax
  init, step, batch_arrays = _step(config, 224, 1000, batch)
  state = init(jax.random.key(0))
  t = time.perf_counter()
  compiled = step.lower(state, batch_arrays).compile()
  compile_s = time.perf_counter() - t
  state, metrics = compiled(state, batch_arrays)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch_arrays)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  return {"device": jax.devices()[0].device_kind, "batch": batch, "compile_s": compile_s,
          "step_ms": 1e3 * statistics.median(times),
          "images_per_s": batch / statistics.median(times)}


# ---------------------------------------------------------------------------


def main(argv=None) -> None:
  args = parse_args(argv)
  config = load_config(CONFIG)
  mean, std = data.sources.RELEASED_CODE_STATS["imagenet2012"].values()
  root = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="snnjax_imagefolder_"))
  load = os.getloadavg()
  try:
    kb = write_folder(root, args.classes, args.per_class, args.noise)
    paths = sorted((root / "train").glob("*/*.JPEG"))[:args.stage_images]
    result = {"images": args.classes * args.per_class, "mean_file_kb": kb,
              "imagenet_train_mean_kb": IMAGENET_TRAIN_MEAN_KB,
              "cores": len(os.sched_getaffinity(0)), "loadavg_start": load,
              "stages_ms": stage_times(paths, mean, std)}
    rates = {}
    for _ in range(args.repeats):  # rows interleaved, so drifting load hits all of them
      for workers in (int(w) for w in args.workers.split(",")):
        rates.setdefault(("snnjax", workers), []).append(
            snnjax_rate(config, root, workers, args.batch, args.batches))
        rates.setdefault(("torch", workers), []).append(
            torch_rate(root, mean, std, workers, args.batch, args.batches))
        print(f"workers={workers}: snnjax {rates['snnjax', workers][-1]:.0f}, torch "
              f"{rates['torch', workers][-1]:.0f} images/s", flush=True)
    result["pipelines"] = [
        {"pipeline": name, "workers": workers, "images_per_s": statistics.median(values),
         "min": min(values), "max": max(values), "runs": values}
        for (name, workers), values in rates.items()]
  finally:
    if not args.keep:
      shutil.rmtree(root, ignore_errors=True)
  imagenet = step_gflop_per_image(config, 224, 1000)
  resnet19 = step_gflop_per_image(resnet19_benchmark_config(), 32, 10)
  estimate = args.resnet19_gpu_images_per_s * resnet19 / imagenet
  result["consumption"] = {
      "imagenet_resnet34_sml_gflop_per_image": imagenet,
      "resnet19_benchmark_gflop_per_image": resnet19,
      "resnet19_gpu_images_per_s": args.resnet19_gpu_images_per_s,
      "imagenet_gpu_images_per_s_estimate": estimate}
  if args.measure_step:
    result["consumption"]["measured"] = measured_step_rate(config, args.step_batch)
  workers = max(r["workers"] for r in result["pipelines"])
  if workers:
    rate = next(r["images_per_s"] for r in result["pipelines"]
                if r["pipeline"] == "snnjax" and r["workers"] == workers)
    result["snnjax_images_per_s_per_worker"] = rate / workers
    result["workers_to_feed_one_gpu_estimate"] = estimate / (rate / workers)
  result["loadavg_end"] = os.getloadavg()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2))
  out.with_suffix(".md").write_text(markdown(result))
  print(markdown(result))


def markdown(result: dict) -> str:
  """The run as Markdown tables."""
  lines = [f"{result['images']} JPEGs, mean {result['mean_file_kb']:.0f} KB (ImageNet train: "
           f"{result['imagenet_train_mean_kb']:.0f} KB); {result['cores']} cores; load average "
           f"{result['loadavg_start'][0]:.2f} at the start, {result['loadavg_end'][0]:.2f} at the "
           f"end.", "", "| stage (one image, one thread) | ms |", "|---|---|"]
  lines += [f"| {k} | {v:.2f} |" for k, v in result["stages_ms"].items()]
  lines += ["", "| pipeline | workers | images/s (median) | min | max |", "|---|---|---|---|---|"]
  lines += [f"| {r['pipeline']} | {r['workers']} | {r['images_per_s']:.0f} | {r['min']:.0f} | "
            f"{r['max']:.0f} |" for r in sorted(result["pipelines"],
                                                 key=lambda r: (r["workers"], r["pipeline"]))]
  c = result["consumption"]
  lines += ["", f"Training step, XLA cost analysis: imagenet_resnet34_sml "
                f"{c['imagenet_resnet34_sml_gflop_per_image']:.1f} GFLOP per image, ResNet-19 "
                f"(train_throughput.py) {c['resnet19_benchmark_gflop_per_image']:.1f}; ResNet-19 at "
                f"{c['resnet19_gpu_images_per_s']:.0f} images/s on the GPU scales to an estimated "
                f"{c['imagenet_gpu_images_per_s_estimate']:.0f} images/s for ImageNet."]
  if "workers_to_feed_one_gpu_estimate" in result:
    lines += [f"snnjax decodes {result['snnjax_images_per_s_per_worker']:.0f} images/s per "
              f"worker: about {result['workers_to_feed_one_gpu_estimate']:.1f} workers (cores) "
              f"keep one such GPU fed."]
  if "measured" in c:
    m = c["measured"]
    lines += [f"Measured step on {m['device']}: batch {m['batch']}, {m['step_ms']:.1f} ms, "
              f"{m['images_per_s']:.0f} images/s (compile {m['compile_s']:.0f} s)."]
  return "\n".join(lines) + "\n"

if __name__ == "__main__":
  main()
