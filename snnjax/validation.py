"""Checks of user input that run before anything is traced or compiled."""

from __future__ import annotations

from collections.abc import Mapping
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


def check(ok: bool, message: str) -> None:
  """Raises ValueError(message) unless ``ok``."""
  if not ok:
    raise ValueError(message)


def is_int(value: Any) -> bool:
  """True for a Python int that is not a bool."""
  return isinstance(value, int) and not isinstance(value, bool)


def flat_keys(tree: Mapping, prefix: str = "") -> set[str]:
  """The dotted keys of every leaf of a nested mapping: {"a.b", "c"} for {"a": {"b": 1}, "c": 2}."""
  keys = set()
  for key, value in tree.items():
    keys |= flat_keys(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {prefix + key}
  return keys


def check_keys(block: str, given: Mapping, defaults: Mapping, start_from: str) -> None:
  """Raises ValueError naming the keys of ``config.<block>`` that are unknown or missing.

  Args:
    block: the block's dotted name, e.g. "data".
    given, defaults: the block as nested mappings (``to_dict()`` of a ConfigDict).
    start_from: where a complete block comes from, e.g. "snnjax.data.default_config()".
  """
  known, present = flat_keys(defaults), flat_keys(given)
  unknown = sorted(present - known)
  check(not unknown, f"unknown config.{block} keys {unknown}; allowed: {sorted(known)}.")
  missing = sorted(known - present)
  check(not missing, f"config.{block} lacks keys {missing}; start from {start_from}.")


def check_int(key: str, value: Any, minimum: int = 0, note: str = "") -> None:
  """Raises ValueError unless ``config.<key>`` is an int >= ``minimum`` (0 or 1).

  The message reads "config.<key>=<value> must be an int >= 0" (or "a positive
  int" for minimum 1), followed by ``note``, e.g. "(pixels)".
  """
  wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
  check(is_int(value) and value >= minimum,
        f"config.{key}={value!r} must be {wanted}{' ' + note if note else ''}.")


def check_known(kind: str, value: Any, allowed: Any) -> None:
  """Raises ValueError("unknown <kind> <value>; allowed: ...") unless ``value`` is in ``allowed``.

  For function arguments (a config key's check is :func:`check_choice`).
  """
  check(value in tuple(allowed),
        f"unknown {kind} {value!r}; allowed: {', '.join(map(str, allowed))}.")


def check_choice(key: str, value: Any, allowed: Any) -> None:
  """Raises ValueError unless ``config.<key>`` is one of ``allowed`` (names, in order)."""
  check(value in tuple(allowed),
        f"config.{key}={value!r} unknown; allowed: {', '.join(map(str, allowed))}.")


def check_positive(key: str, value: Any, strict: bool = True) -> None:
  """Raises ValueError unless ``config.<key>`` is a number > 0 (``strict``) or >= 0."""
  number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
  check(number and (value > 0 if strict else value >= 0),
        f"config.{key}={value!r} must be {'>' if strict else '>='} 0.")
