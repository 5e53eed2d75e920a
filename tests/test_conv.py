"""snnjax.conv.explicit_grad_conv: lax's convolution with explicitly canonical gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from snnjax import conv

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("size, kernel, stride, padding", [
    ((9, 9), 3, 1, ((1, 1), (1, 1))),
    ((9, 8), 3, 2, ((1, 1), (1, 1))),
    ((8, 8), 1, 2, ((0, 0), (0, 0))),
    ((11, 10), 7, 2, ((3, 3), (3, 3))),
    ((10, 10), 5, 3, ((2, 1), (0, 2))),
    ((7, 7), 3, 1, "SAME"),
    ((8, 9), 3, 2, "VALID"),
])
def test_value_and_gradients_are_lax_convolutions(size, kernel, stride, padding):
  kx, kw, ky = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, *size, 3))
  w = jax.random.normal(kw, (kernel, kernel, 3, 4))
  args = dict(window_strides=(stride, stride), padding=padding, dimension_numbers=DIMS)
  y, vjp = jax.vjp(lambda x, w: lax.conv_general_dilated(x, w, **args), x, w)
  y_explicit, vjp_explicit = jax.vjp(lambda x, w: conv.explicit_grad_conv(x, w, **args), x, w)
  np.testing.assert_allclose(y_explicit, y, atol=1e-5)
  dy = jax.random.normal(ky, y.shape)
  for got, want in zip(vjp_explicit(dy), vjp(dy)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_other_convolutions_are_passed_to_lax():
  x, w = jnp.ones((1, 6, 6, 4)), jnp.ones((3, 3, 2, 4))
  args = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=DIMS,
              feature_group_count=2)
  np.testing.assert_allclose(conv.explicit_grad_conv(x, w, **args),
                             lax.conv_general_dilated(x, w, **args))


def _conv_microbench():
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "conv_microbench.py"
  spec = importlib.util.spec_from_file_location("conv_microbench", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_benchmarks_other_conv_formulations_compute_lax_convolution_and_its_gradients():
  bench = _conv_microbench()
  times = bench.formulation_times(2, 6, 3, repeats=1)   # raises if any formulation differs
  assert set(times) >= {"winograd forward + both grads", "kernel grad im2col"}
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
  w = jax.random.normal(jax.random.key(2), (3, 3, 3, 4))
  with pytest.raises(AssertionError, match="relative difference"):
    bench._checked("transposed kernel", bench.winograd_conv(x, w[::-1]), bench.lax_conv(x, w))
