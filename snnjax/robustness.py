"""Accuracy under input noise: python -m snnjax.robustness --workdir DIR [--gaussian S,...].

The robustness evaluation of "Surrogate gradient scaling for directly training
spiking neural networks" (Chen et al., Applied Intelligence 2023), which
reports accuracy under Gaussian and salt-and-pepper noise of given strengths.
Its exact noise definitions are not public; snnjax's choices, on images with
pixel values in [0, 1]:

- Gaussian: x + sigma * N(0, 1) per value (pixel and channel), clipped to [0, 1].
- Salt and pepper: each pixel (all its channels together) becomes white (1)
  with probability amount/2 and black (0) with probability amount/2.

Interaction with the pipeline's normalisation (snnjax's choice): the eval
pipeline yields normalised float32 z = (x - mean) / std (after any eval
resize / centre crop). The noise is applied to the image the network sees:
x = z * std + mean (the exact inverse of that affine map, so x is in [0, 1]
up to float rounding), noise, clip to [0, 1], z' = (x' - mean) / std, with
the config's mean and std. Strength 0 returns the clean batch unchanged, so
the clean split is evaluated once and its accuracy is every noise's strength-0
row. Event data (counts, not images) is rejected.

    python -m snnjax.robustness --workdir DIR --gaussian 0,0.05,0.1 \
        --salt-pepper 0,0.02,0.05 --out docs/robustness.md --plot docs/robustness.png
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snnjax import data, evaluate
from snnjax.train import config as config_lib
from snnjax.train import loop

Array = jax.Array


def gaussian_noise(images: Array, sigma: Any, key: Array) -> Array:
  """clip(images + sigma * N(0, 1), 0, 1), element-wise; images in [0, 1], any shape."""
  images = jnp.asarray(images)
  noise = jax.random.normal(key, images.shape, images.dtype)
  return jnp.clip(images + jnp.asarray(sigma, images.dtype) * noise, 0.0, 1.0)


def salt_and_pepper(images: Array, amount: Any, key: Array) -> Array:
  """Each pixel of [..., H, W, C] images in [0, 1] -> 1 w.p. amount/2, 0 w.p. amount/2.

  A pixel's channels change together (one draw per pixel); ``amount`` in [0, 1]
  is the expected fraction of pixels replaced.
  """
  images = jnp.asarray(images)
  u = jax.random.uniform(key, (*images.shape[:-1], 1))
  half = jnp.asarray(amount, jnp.float32) / 2
  noisy = jnp.where(u < half, 1.0, jnp.where(u >= 1 - half, 0.0, images))
  return noisy.astype(images.dtype)


NOISES: dict[str, Callable[[Array, Any, Array], Array]] = {
    "gaussian": gaussian_noise,
    "salt_pepper": salt_and_pepper,
}


@functools.partial(jax.jit, static_argnames="kind")
def noisy_normalized(images: Array, strength: Any, key: Array, mean: Array, std: Array, *,
                     kind: str) -> Array:
  """Normalised images z -> (noise(z * std + mean) - mean) / std; z itself at strength 0.

  ``mean`` and ``std`` broadcast against the channel axis. ``strength`` is a
  traced scalar (sigma or amount), so sweeping it never recompiles.
  """
  raw = images * std + mean
  noisy = (NOISES[kind](raw, strength, key) - mean) / std
  return jnp.where(strength > 0, noisy, images).astype(images.dtype)


def check_noise(kind: str, strengths: Sequence[float]) -> None:
  """Raises ValueError for an unknown noise or a strength out of range."""
  if kind not in NOISES:
    raise ValueError(f"unknown noise {kind!r}; allowed: {', '.join(NOISES)}.")
  limit = 1.0 if kind == "salt_pepper" else float("inf")
  bad = [s for s in strengths if not 0 <= s <= limit]
  if bad:
    raise ValueError(f"{kind} strengths {bad} out of range; allowed: 0 <= strength"
                     f"{' <= 1 (fraction of pixels)' if kind == 'salt_pepper' else ' (sigma)'}.")


def noisy_batches(batches: Iterable[dict], kind: str, strength: float, key: Array,
                  mean: Array, std: Array) -> Iterator[dict]:
  """``batches`` with their normalised images under ``kind`` noise of ``strength``.

  Batch i draws from ``fold_in(key, i)``; labels and masks are unchanged.
  """
  for i, batch in enumerate(batches):
    image = noisy_normalized(jnp.asarray(batch["image"]), strength, jax.random.fold_in(key, i),
                             mean, std, kind=kind)
    yield {**batch, "image": np.asarray(image)}


def accuracy_under_noise(evaluate: Callable[[Iterable[dict], str], Mapping[str, float]],
                         batches: Iterable[dict], noises: Mapping[str, Sequence[float]],
                         key: Array, mean: Sequence[float], std: Sequence[float]
                         ) -> dict[str, dict[float, float]]:
  """{noise: {strength: test accuracy}} over one pass of ``batches`` per distinct setting.

  Strength 0 is the clean data whatever the noise: ``batches`` are evaluated
  once, unchanged, and that accuracy fills every noise's strength-0 entry.

  Args:
    evaluate: (batches, what) -> metrics with "test_accuracy", e.g. one pass of
      :func:`snnjax.train.loop.evaluate`; ``what`` is "clean" or e.g. "gaussian 0.1".
    batches: the eval split's batches (normalised images), iterable once per pass
      (a grain dataset, a list).
    noises: {"gaussian": sigmas, "salt_pepper": amounts}.
    key: PRNG key; every (noise, strength) draws from its own fold of it,
      per batch, and the process index.
    mean, std: the pipeline's per-channel normalisation (0..1 scale).
  """
  for kind, strengths in noises.items():
    check_noise(kind, strengths)
  mean_a, std_a = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  key = jax.random.fold_in(key, jax.process_index())
  clean: list[float] = []  # evaluated on first use
  results: dict[str, dict[float, float]] = {}
  for n, (kind, strengths) in enumerate(noises.items()):
    results[kind] = {}
    for strength in map(float, strengths):
      if strength == 0:
        if not clean:
          clean.append(float(evaluate(batches, "clean")["test_accuracy"]))
        results[kind][strength] = clean[0]
        continue
      noisy = noisy_batches(batches, kind, strength, jax.random.fold_in(key, n), mean_a, std_a)
      results[kind][strength] = float(evaluate(noisy, f"{kind} {strength:g}")["test_accuracy"])
  return results


def format_table(results: Mapping[str, Mapping[float, float]], title: str = "") -> str:
  """Markdown: one row per (noise, strength) with the test accuracy in %."""
  lines = [f"# {title}", ""] if title else []
  lines += ["| noise | strength | test accuracy (%) |", "|---|---:|---:|"]
  for kind, row in results.items():
    for strength, accuracy in row.items():
      lines.append(f"| {kind} | {strength:g} | {100 * accuracy:.2f} |")
  return "\n".join(lines) + "\n"


#: Axis label of each noise's strength, for tables and figures.
NOISE_LABELS = {"gaussian": "Gaussian noise sigma", "salt_pepper": "salt-and-pepper amount"}


def plot(results: Mapping[str, Mapping[float, float]], path: str | pathlib.Path,
         title: str = "") -> None:
  """Accuracy vs strength, one panel per noise, saved to ``path``."""
  plt = evaluate.pyplot()
  fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.5), squeeze=False)
  for ax, (kind, row) in zip(axes[0], results.items()):
    ax.plot(list(row), [100 * a for a in row.values()], marker="o")
    ax.set_xlabel(NOISE_LABELS.get(kind, kind))
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def evaluate_workdir(workdir: str | pathlib.Path, noises: Mapping[str, Sequence[float]],
                     which: str = "best", seed: int = 0, split: str | None = None,
                     batch_size: int | None = None) -> dict[str, Any]:
  """Restores a run's checkpoint (as snnjax.evaluate does) and measures accuracy under noise.

  ``split`` defaults to the run's eval split, ``batch_size`` to its batch_size.
  """
  for kind, strengths in noises.items():
    check_noise(kind, strengths)
  config = config_lib.load_saved_config(evaluate.check_run_dir(workdir))
  if config.data.source == "events":
    raise ValueError("noise robustness is defined for images in [0, 1]; this run trains on "
                     "event frames (config.data.source='events').")
  config, experiment, state, step = evaluate.restore_run(workdir, which)
  split = split or config.data.eval_split
  pipeline = evaluate.split_pipeline(config, experiment, split, batch_size)
  transform, _ = data.make_transform(
      config.data, data.create_source(config.data, split), train=False)
  eval_step = loop.LazyCompiled("eval step", loop.compiled_eval_step(experiment))
  results = accuracy_under_noise(
      lambda batches, what: evaluate.evaluate_pass(eval_step, state, batches,
                                                   pipeline.steps_per_epoch, experiment.mesh, what),
      pipeline.dataset, noises, jax.random.key(seed), transform.mean, transform.std)
  return {"step": step, "config": config, "results": results}


def _floats(text: str) -> list[float]:
  """A comma-separated list of numbers, e.g. "0,0.05,0.1" (argparse type)."""
  try:
    return [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma-separated list of numbers, e.g. 0,0.05,0.1") from None


def main(argv=None) -> int:
  parser = evaluate.command_parser("robustness", __doc__, seed=True, plot=True)
  parser.add_argument("--gaussian", type=_floats, default="0,0.05,0.1", metavar="S,...",
                      help="comma-separated sigmas on the 0..1 pixel scale ('' for none)")
  parser.add_argument("--salt-pepper", type=_floats, default="0,0.02,0.05", metavar="A,...",
                      help="comma-separated fractions of pixels replaced ('' for none)")
  args = parser.parse_args(argv)
  noises = {k: v for k, v in (("gaussian", args.gaussian), ("salt_pepper", args.salt_pepper)) if v}
  for kind, strengths in noises.items():
    try:
      check_noise(kind, strengths)
    except ValueError as e:
      parser.error(f"argument --{kind.replace('_', '-')}: {str(e).rstrip('.')}")
  if not noises:
    parser.error("--gaussian and --salt-pepper are both empty; give at least one strength")
  def title(result):
    c = result["config"]
    dataset = c.data.name if c.data.source in ("tfds", "cifar_python") else c.data.source
    return (f"Accuracy under input noise: {c.model.name} on {dataset}, "
            f"checkpoint step {result['step']}")

  return evaluate.report_main(
      lambda: evaluate_workdir(args.workdir, noises, args.checkpoint, args.seed, args.split,
                               args.batch_size),
      lambda r: format_table(r["results"], title(r)), plot, args.out, args.plot)


if __name__ == "__main__":
  sys.exit(main())
