"""A 2-D convolution whose gradients are themselves plain NHWC / HWIO convolutions.

XLA:CPU rewrites the two convolutions of a convolution's backward pass (input
gradient dX, weight gradient dW) into its fast canonical form only in the
program's entry computation. Inside a loop body (``jax.lax.scan``, as in the
SLTT gradient's scan over time steps) they stay in their transposed dimension
orders and run on a slow generic path: measured here at 2.8x (dX) and 12x (dW)
the time of the same convolution outside a loop, while the forward convolution
is unaffected. :func:`explicit_grad_conv` computes both gradients with explicit
transposes as canonical convolutions, so they are fast anywhere.

For y = conv(x, w) with x [N, H, W, C], w [kh, kw, C, O], stride s and
padding (lo, hi) per spatial axis (input size n, output size m):

    dX = conv(dy dilated by s, flip(w)^T [kh, kw, O, C]),
         padding (k - 1 - lo, n + lo - ((m - 1) s + 1))
    dW = conv(x^T [C, H, W, N], dy^T [m_h, m_w, N, O], window dilation s),
         padding (lo, hi - r), r = (n + lo + hi - k) mod s; result [C, kh, kw, O] -> [kh, kw, C, O]

Other convolutions (dilated, grouped, other layouts) fall back to
``jax.lax.conv_general_dilated``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
NHWC = ("NHWC", "HWIO", "NHWC")


def _canonical(x: Array, w: Array, strides: tuple[int, ...], padding: tuple[tuple[int, int], ...],
               precision: Any, lhs_dilation=None, rhs_dilation=None) -> Array:
  return lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=lhs_dilation,
                                  rhs_dilation=rhs_dilation, dimension_numbers=NHWC,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x: Array, w: Array, strides, padding, precision) -> Array:
  return _canonical(x, w, strides, padding, precision)


def _conv_fwd(x, w, strides, padding, precision):
  return _canonical(x, w, strides, padding, precision), (x, w)


def _conv_bwd(strides, padding, precision, residuals, dy):
  x, w = residuals
  kernel, in_sizes, out_sizes = w.shape[:2], x.shape[1:3], dy.shape[1:3]
  dx_padding = tuple(
      (k - 1 - lo, n + lo - ((m - 1) * s + 1))
      for k, n, m, s, (lo, _) in zip(kernel, in_sizes, out_sizes, strides, padding))
  flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  dx = _canonical(dy, flipped, (1, 1), dx_padding, precision, lhs_dilation=strides)
  dw_padding = tuple((lo, hi - (n + lo + hi - k) % s)
                     for k, n, s, (lo, hi) in zip(kernel, in_sizes, strides, padding))
  dw = _canonical(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), dw_padding,
                  precision, rhs_dilation=strides).transpose(1, 2, 0, 3)
  return dx.astype(x.dtype), dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _is_nhwc_hwio(dimension_numbers: Any) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return (tuple(dimension_numbers.lhs_spec), tuple(dimension_numbers.rhs_spec),
            tuple(dimension_numbers.out_spec)) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  return tuple(dimension_numbers) == NHWC


def explicit_grad_conv(lhs: Array, rhs: Array, window_strides: Sequence[int], padding: Any,
                       lhs_dilation: Sequence[int] | None = None,
                       rhs_dilation: Sequence[int] | None = None, dimension_numbers: Any = None,
                       feature_group_count: int = 1, batch_group_count: int = 1,
                       precision: Any = None, preferred_element_type: Any = None) -> Array:
  """``jax.lax.conv_general_dilated`` with the same forward and explicit canonical gradients.

  A drop-in for flax.linen.Conv's ``conv_general_dilated``. NHWC / HWIO 2-D
  convolutions without dilation, groups or a preferred element type use the
  explicit gradients of the module docstring; anything else is passed to lax.
  """
  plain = (lhs.ndim == 4 and _is_nhwc_hwio(dimension_numbers)
           and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and all(d == 1 for d in (rhs_dilation or (1, 1)))
           and feature_group_count == 1 and batch_group_count == 1
           and preferred_element_type is None)
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, batch_group_count,
                                    precision, preferred_element_type)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return _conv(lhs, rhs, tuple(int(s) for s in window_strides),
               tuple((int(lo), int(hi)) for lo, hi in padding), precision)
