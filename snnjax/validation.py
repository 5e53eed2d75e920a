"""Checks of user input that run before anything is traced or compiled."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def concrete(value: Any) -> np.ndarray | None:
  """``value`` as a NumPy array, or None when it is a tracer (unknown until run time)."""
  if isinstance(value, jax.core.Tracer):
    return None
  return np.asarray(value)


def check_all(value: Any, predicate, message: str) -> None:
  """Raises ValueError(message) when a concrete ``value`` fails ``predicate`` anywhere.

  Traced values pass: they are checked where they were concrete (at construction).
  """
  array = concrete(value)
  if array is not None and array.size and not bool(np.all(predicate(array))):
    raise ValueError(message)
