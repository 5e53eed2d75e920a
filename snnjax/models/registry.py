"""Model registry: ``create(name, **kwargs)`` and ``names()``.

    model = create("resnet19", num_classes=10, T=4, sml_heads=(3, 6))
    variables = model.init(key, images, train=False)   # params, batch_stats, surrogate
    out, updates = model.apply(variables, images, train=True,
                               mutable=["batch_stats", "intermediates"])

Keyword arguments are the factory's own (e.g. ``stem``, ``depth``, ``form``) and
the shared model attributes of :class:`snnjax.models.common.SpikingNet`
(num_classes, T, sml_heads, head_channels, neuron, neuron_kwargs, surrogate,
spiking, width, dtype, bn_momentum, bn_per_step).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from snnjax.models import resnet, vgg
from snnjax.models.common import SpikingNet

Factory = Callable[..., SpikingNet]

_MODELS: dict[str, Factory] = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet19": resnet.resnet19,
    "sew_resnet34": resnet.sew_resnet34,
    "vgg_small": vgg.vgg_small,
    "vggsnn": vgg.vggsnn,
    "depth_net": vgg.depth_net,
}

#: Attributes every model takes through ``create``.
SHARED = tuple(f.name for f in dataclasses.fields(SpikingNet) if f.name not in ("parent", "name"))


def register(name: str, factory: Factory) -> None:
  """Adds a model: ``factory(**kwargs)`` returns a :class:`SpikingNet`."""
  if name in _MODELS:
    raise ValueError(f"model {name!r} is already registered.")
  _MODELS[name] = factory


def names() -> tuple[str, ...]:
  """Registered model names, sorted."""
  return tuple(sorted(_MODELS))


def allowed_arguments(name: str) -> tuple[str, ...]:
  """Keyword arguments ``create(name, ...)`` accepts."""
  factory = _get(name)
  own = [p for p, v in inspect.signature(factory).parameters.items() if v.kind != v.VAR_KEYWORD]
  return tuple(sorted(set(own) | set(SHARED)))


def create(name: str, **kwargs: Any) -> SpikingNet:
  """Builds a registered model.

  Raises:
    ValueError: unknown name or argument, bad neuron, surrogate or head index.

  All checks happen here, before anything is traced or compiled.
  """
  factory = _get(name)
  unknown = set(kwargs) - set(allowed_arguments(name))
  if unknown:
    raise ValueError(f"model {name!r} takes {list(allowed_arguments(name))}, "
                     f"not {sorted(unknown)}.")
  model = factory(**kwargs)
  model.layer_factory.validate()
  return model


def _get(name: str) -> Factory:
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; registered: {', '.join(names())}.")
  return _MODELS[name]
