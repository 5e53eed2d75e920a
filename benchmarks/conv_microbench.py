"""One 3x3 convolution, forward and both backward passes: XLA:CPU (JAX) against PyTorch (oneDNN).

The shapes of ResNet-19's three stages at the default benchmark size (width 1/4,
T*B = 64 merged images): this is most of a training step (see profile_step.py),
so it bounds how fast any JAX SNN library can be on this CPU relative to
PyTorch-based ones. JAX runs first (before PyTorch starts any thread), each
measurement is the median of ``--repeats`` runs after one warm-up.

    python benchmarks/conv_microbench.py [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

SHAPES = ((64, 32, 32), (64, 16, 64), (64, 8, 128))   # (N, H = W, C in = C out)


def median_ms(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return 1e3 * statistics.median(times)


def jax_times(n: int, h: int, c: int, repeats: int) -> dict[str, float]:
  """Forward, input gradient and kernel gradient of an NHWC / HWIO conv, jitted separately."""
  conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  x, w, g = jnp.ones((n, h, h, c)), jnp.full((3, 3, c, c), 0.01), jnp.ones((n, h, h, c))
  fwd = jax.jit(conv)
  dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g))
  dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g))
  return {"forward": median_ms(lambda: fwd(x, w), repeats),
          "input grad": median_ms(lambda: dx(x, w, g), repeats),
          "kernel grad": median_ms(lambda: dw(x, w, g), repeats)}


def torch_times(n: int, h: int, c: int, repeats: int) -> dict[str, float]:
  """The same in PyTorch (NCHW, oneDNN): forward, then forward + both gradients."""
  import torch
  x = torch.ones(n, c, h, h, requires_grad=True)
  w = torch.full((c, c, 3, 3), 0.01, requires_grad=True)
  g = torch.ones(n, c, h, h)
  conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)
  both = lambda: torch.autograd.grad(conv(), (x, w), g)
  forward = median_ms(lambda: conv().detach(), repeats)
  return {"forward": forward, "forward + both grads": median_ms(both, repeats)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                 help="PyTorch threads (XLA uses one per visible core)")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--json", default=None)
  args = p.parse_args()
  results = [{"shape": s, "jax": jax_times(*s, args.repeats)} for s in SHAPES]
  import torch
  torch.set_num_threads(args.threads)
  for r in results:
    r["torch"] = torch_times(*r["shape"], args.repeats)
  print("| N, H=W, C | JAX fwd | JAX dx | JAX dW | JAX total | torch fwd | torch fwd+dx+dW "
        "| JAX / torch |\n|---|---|---|---|---|---|---|---|")
  for r in results:
    j, t = r["jax"], r["torch"]
    total = sum(j.values())
    print(f"| {r['shape']} | {j['forward']:.1f} | {j['input grad']:.1f} | {j['kernel grad']:.1f} "
          f"| {total:.1f} | {t['forward']:.1f} | {t['forward + both grads']:.1f} "
          f"| {total / t['forward + both grads']:.2f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"results": results, "jax": jax.__version__, "torch": torch.__version__,
                 "torch_threads": args.threads}, f, indent=1)


if __name__ == "__main__":
  main()
