"""One 3x3 convolution, forward and both backward passes: XLA:CPU (JAX) against PyTorch (oneDNN).

The shapes of ResNet-19's three stages at the default benchmark size (width 1/4,
T*B = 64 merged images): this is most of a training step (see profile_step.py),
so it bounds how fast any JAX SNN library can be on this CPU relative to
PyTorch-based ones. JAX runs first (before PyTorch starts any thread), each
measurement is the median of ``--repeats`` runs after one warm-up. JAX runs with
the XLA flags snnjax sets on the CPU (``snnjax.xla_flags``; $XLA_FLAGS wins).

``--formulations`` also times other ways to compute the same convolution and its
gradients from XLA operations, each checked against ``lax.conv_general_dilated``
(largest difference <= 1e-5 of the largest value):

- Winograd F(2x2, 3x3) ("Fast Algorithms for Convolutional Neural Networks",
  Lavin and Gray): y = A^T [(G g G^T) * (B^T d B)] A per 2x2 output tile, the
  channel sum as 16 batched matmuls, 2.25x fewer multiplications than direct;
  gradients by autodiff;
- the kernel gradient as im2col + one matmul: dW = patches(x)^T dy;
- the kernel gradient as nine shifted matmuls: dW[i, j] = x[:, i:i+H, j:j+W]^T dy.

    python benchmarks/conv_microbench.py [--threads 2] [--formulations] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from snnjax import xla_flags  # noqa: E402  (before jax is imported)

xla_flags.apply()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

SHAPES = ((64, 32, 32), (64, 16, 64), (64, 8, 128))   # (N, H = W, C in = C out)


def median_ms(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return 1e3 * statistics.median(times)


def lax_conv(x: jax.Array, w: jax.Array) -> jax.Array:
  """3x3, stride 1, padding 1, NHWC / HWIO."""
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def winograd_conv(x: jax.Array, w: jax.Array) -> jax.Array:
  """``lax_conv`` by Winograd F(2x2, 3x3); H and W even."""
  n, h, width, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = jnp.einsum("pa,anhwc->pnhwc", WINOGRAD_BT,
                    jnp.stack([padded[:, a:a + h:2] for a in range(4)]))
  tiles = jnp.stack([rows[:, :, :, b:b + width:2] for b in range(4)], 1)
  data = jnp.einsum("qb,pbnhwc->pqnhwc", WINOGRAD_BT, tiles)      # [4, 4, N, H/2, W/2, C]
  kernel = jnp.einsum("pa,abio,qb->pqio", WINOGRAD_G, w, WINOGRAD_G)
  products = jnp.einsum("pqnhwc,pqco->pqnhwo", data, kernel)
  out = jnp.einsum("ip,jq,pqnhwo->nhiwjo", WINOGRAD_AT, WINOGRAD_AT, products)
  return out.reshape(n, h, width, -1)


def kernel_grad_im2col(x: jax.Array, dy: jax.Array) -> jax.Array:
  """dW of ``lax_conv`` as patches(x)^T dy, [3, 3, C, O]."""
  patches = jax.lax.conv_general_dilated_patches(
      x, (3, 3), (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  dw = jnp.einsum("nhwk,nhwo->ko", patches, dy)                    # k = c * 9 + i * 3 + j
  return dw.reshape(x.shape[-1], 3, 3, -1).transpose(1, 2, 0, 3)


def kernel_grad_shifted(x: jax.Array, dy: jax.Array) -> jax.Array:
  """dW of ``lax_conv`` as nine matmuls of shifted views of x with dy, [3, 3, C, O]."""
  n, h, width, c = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  flat_dy = dy.reshape(-1, dy.shape[-1])
  return jnp.stack([jnp.stack([padded[:, i:i + h, j:j + width].reshape(-1, c).T @ flat_dy
                               for j in range(3)]) for i in range(3)])


def _checked(name: str, got: jax.Array, want: jax.Array) -> None:
  error = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
  if error > 1e-5:
    raise AssertionError(f"{name}: relative difference {error:.1e} from lax.conv_general_dilated")


def _forward_and_grads(conv):
  """jit of (y, dx, dw) = conv(x, w) and its pullback of dy."""
  def both(x, w, dy):
    y, pullback = jax.vjp(conv, x, w)
    return (y, *pullback(dy))
  return jax.jit(both)


def formulation_times(n: int, h: int, c: int, repeats: int) -> dict[str, float]:
  """Winograd forward and forward + both gradients; dW by im2col and by shifted matmuls."""
  rng = np.random.default_rng(0)
  x, dy = (jnp.asarray(rng.normal(size=(n, h, h, c)), jnp.float32) for _ in range(2))
  w = jnp.asarray(rng.normal(size=(3, 3, c, c)) / (3 * np.sqrt(c)), jnp.float32)
  lax_all, winograd_all = _forward_and_grads(lax_conv), _forward_and_grads(winograd_conv)
  winograd_forward = jax.jit(winograd_conv)
  im2col, shifted = jax.jit(kernel_grad_im2col), jax.jit(kernel_grad_shifted)
  want = lax_all(x, w, dy)
  for what, got, wanted in zip(("forward", "input grad", "kernel grad"), winograd_all(x, w, dy),
                               want):
    _checked(f"winograd {what}", got, wanted)
  _checked("im2col kernel grad", im2col(x, dy), want[2])
  _checked("shifted kernel grad", shifted(x, dy), want[2])
  return {"lax forward + both grads": median_ms(lambda: lax_all(x, w, dy), repeats),
          "winograd forward": median_ms(lambda: winograd_forward(x, w), repeats),
          "winograd forward + both grads": median_ms(lambda: winograd_all(x, w, dy), repeats),
          "kernel grad im2col": median_ms(lambda: im2col(x, dy), repeats),
          "kernel grad shifted": median_ms(lambda: shifted(x, dy), repeats)}


def jax_times(n: int, h: int, c: int, repeats: int) -> dict[str, float]:
  """Forward, input gradient and kernel gradient of an NHWC / HWIO conv, jitted separately."""
  conv = lax_conv
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
  p.add_argument("--formulations", action="store_true",
                  help="also time Winograd and matmul formulations (module docstring)")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load average "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
  results = [{"shape": s, "jax": jax_times(*s, args.repeats)} for s in SHAPES]
  for r in results if args.formulations else ():
    r["formulations"] = formulation_times(*r["shape"], args.repeats)
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
  if args.formulations:
    print_formulations(results)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"results": results, "jax": jax.__version__, "torch": torch.__version__,
                 "torch_threads": args.threads, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                 "load_average_end": os.getloadavg()}, f, indent=1)


def print_formulations(results: list[dict]) -> None:
  """Each formulation's time and its ratio to XLA's own convolution (lower is faster)."""
  print("\n| N, H=W, C | lax fwd+dx+dW | Winograd fwd | Winograd fwd+dx+dW | dW im2col "
        "| dW shifted | Winograd / lax (fwd, all) | dW im2col / lax | dW shifted / lax |\n"
        "|---|---|---|---|---|---|---|---|---|")
  for r in results:
    f, dw = r["formulations"], r["jax"]["kernel grad"]
    lax_all = f["lax forward + both grads"]
    print(f"| {r['shape']} | {lax_all:.1f} | {f['winograd forward']:.1f} "
          f"| {f['winograd forward + both grads']:.1f} | {f['kernel grad im2col']:.1f} "
          f"| {f['kernel grad shifted']:.1f} "
          f"| {f['winograd forward'] / r['jax']['forward']:.1f}, "
          f"{f['winograd forward + both grads'] / lax_all:.1f} "
          f"| {f['kernel grad im2col'] / dw:.1f} | {f['kernel grad shifted'] / dw:.1f} |")


if __name__ == "__main__":
  main()
