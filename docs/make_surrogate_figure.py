"""Draws every surrogate's h(x) and the Heaviside forward into docs/surrogates.png.

    python docs/make_surrogate_figure.py [--out docs/surrogates.png]
"""

import argparse
import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snnjax import surrogates  # noqa: E402


def surrogate_curves(x: jax.Array) -> dict[str, tuple[jax.Array, jax.Array]]:
  """name -> (H(x), h(x)) at the default parameters, h taken by autodiff of spike."""
  curves = {}
  for name in surrogates.DEFAULTS:
    sg = surrogates.get(name)
    forward = surrogates.spike(x, sg)
    backward = jax.vmap(jax.grad(lambda xi: surrogates.spike(xi, sg)))(x)
    curves[name] = (forward, backward)
  return curves


def draw(out: pathlib.Path) -> None:
  x = jnp.linspace(-2.0, 2.0, 801)
  curves = surrogate_curves(x)
  fig, axes = plt.subplots(3, 3, figsize=(10, 8), sharex=True)
  for ax, (name, (forward, backward)) in zip(axes.flat, curves.items()):
    params = ", ".join(f"{k}={v:g}" for k, v in surrogates.DEFAULTS[name].items())
    ax.plot(x, forward, color="0.6", linestyle="--", label="forward H(x)")
    ax.plot(x, backward, color="C0", label="surrogate h(x)")
    ax.set_title(f"{name} ({params})", fontsize=10)
    ax.grid(alpha=0.3)
  for ax in axes[-1]:
    ax.set_xlabel("x = v - v_threshold")
  axes[0, 0].legend(fontsize=8, loc="upper left")
  fig.suptitle("snnjax surrogate gradients: Heaviside forward, h(x) backward")
  fig.tight_layout()
  fig.savefig(out, dpi=110)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path(__file__).parent / "surrogates.png")
  draw(parser.parse_args().out)
