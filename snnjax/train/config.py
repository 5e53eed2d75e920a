"""The training config: every key with its default, validation, and the model it builds.

Experiment files in configs/ start from :func:`base_config` and override what
they change; ``train.py --config configs/X.py --config.a.b=v`` overrides
further, and a key that does not exist is an error. :func:`validate` checks the
values (and builds the model, which checks its own arguments) before anything
is compiled.

    seed                    PRNG seed of initialisation, shuffling and augmentation.
    imports                 modules (names or .py paths) imported before anything else is
                            checked, e.g. one that registers your own surrogate
                            (snnjax.surrogates.register); analysis commands import them too.
    model.name              a name from snnjax.models.names().
    model.T                 time steps (>= 1).
    model.neuron            "lif" | "if" | "plif".
    model.tau, .decay_input  LIF/PLIF leak (time steps) and input decay (not used by IF).
    model.v_threshold, .v_reset, .reset, .detach_reset   neuron settings (snnjax.neurons).
    model.surrogate         spec string, e.g. "atan(alpha=2)", "sgs(base=rectangle, delta=0.5)";
                            SGS takes model.v_threshold (a v_threshold in its spec must equal it).
    model.width             width multiplier of the SNN layers.
    model.dtype             compute dtype: "float32" | "bfloat16" (parameters stay float32).
    model.bn_momentum       BatchNorm running-average momentum.
    model.remat             "none" | "block" | "neuron": rematerialise (jax.checkpoint) each
                            block, or each neuron's time scan, in the backward pass: less
                            activation memory for ~25% more step time (benchmarks/memory_vs_T.py).
    model.conv_init         "kaiming_fan_out" (default) | "torch": conv weight init
                            (snnjax.models.common.LayerFactory).
    model.dense_init        "lecun" (default, Flax's) | "torch" (PyTorch's nn.Linear default,
                            weights and biases U(+-1/sqrt(fan_in))).
    model.options           model-specific arguments (stem, depth, form, ann, ...).
    data                    see snnjax.data.config (source, folder, augmentation, ...).
    sml.enabled             train with Surrogate Module Learning heads and the SML loss.
    sml.heads               1-based block indices each followed by a surrogate module.
    sml.head_channels       k, channels of the surrogate modules.
    sml.head_bias           the heads' FC512 has a bias (True, as the SML reference code; runs
                            saved before the key existed resume with False).
    sml.alpha, .lam, .temperature   the SML loss (snnjax.losses.sml_loss).
    loss.name               "ce" | "tet": the loss without SML (with SML, the SML loss).
    loss.tet_lam            TET's MSE weight.
    loss.lipschitz_weight   beta_lr of the Lipschitz penalty; 0 = off.
    gradient                "bptt" (default): backpropagation through time | "sltt": spatial
                            learning through time, one time step at a time, activation memory
                            independent of T (snnjax.train.steps.sltt_gradients; per-step
                            BatchNorm statistics and per-step losses).
    estimator               surrogate schedules (GSG, ...) and the chi width controller;
                            see snnjax.estimators.default_config.
    optimizer.name          "adamw" | "adam" | "sgd".
    optimizer.learning_rate, .weight_decay, .b1, .b2, .momentum, .nesterov, .clip_norm (0 = off)
    optimizer.schedule      "cosine" | "constant", after ``warmup_epochs`` of linear warmup.
    optimizer.schedule_unit "step" (default: the cosine moves every step) | "epoch" (constant
                            within an epoch, as PyTorch's CosineAnnealingLR stepped per epoch).
    optimizer.decay_all     weight decay on every parameter (True, as torch.optim.AdamW over
                            model.parameters()) or, by default (False), on kernels only
                            (not biases, BN scales and offsets, PLIF's w).
    batch_size              global batch, over all devices and processes.
    num_epochs              training length in epochs (may be fractional).
    max_steps               if > 0, stop after this many steps (the schedule still spans num_epochs).
    log_every_steps, eval_every_epochs, checkpoint_every_steps (0 = at evaluations and the end)
    keep_checkpoints        the last k checkpoints are kept, plus the best by test accuracy.
    fsdp                    shard large parameters over devices instead of replicating them.
    progress_bar            show a terminal progress bar.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import pathlib
import sys
import time
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from snnjax import data, estimators, layers, models, surrogates, validation
from snnjax.train import optim, steps

NEURON_ARGUMENTS = ("tau", "decay_input", "v_threshold", "v_reset", "reset", "detach_reset")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def base_config() -> ml_collections.ConfigDict:
  """Every key with its default (documented in this module's docstring)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.imports = ()
  c.model = ml_collections.ConfigDict(dict(
      name="vgg_small", T=4, neuron="lif", tau=2.0,
      decay_input=False, v_threshold=1.0, v_reset=0.0, reset="hard", detach_reset=False,
      surrogate="atan(alpha=2.0)", width=1.0, dtype="float32", bn_momentum=0.9,
      remat="none", conv_init="kaiming_fan_out", dense_init="lecun",
      options=ml_collections.ConfigDict()))
  c.data = data.default_config()
  c.sml = ml_collections.ConfigDict(dict(
      enabled=False, heads=(), head_channels=256, head_bias=True, alpha=0.5, lam=0.9,
      temperature=3.0))
  c.loss = ml_collections.ConfigDict(dict(name="ce", tet_lam=1e-3, lipschitz_weight=0.0))
  c.gradient = "bptt"
  c.estimator = estimators.default_config()
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-3, weight_decay=0.0, b1=0.9, b2=0.999, momentum=0.9,
      nesterov=False, clip_norm=0.0, schedule="cosine", schedule_unit="step",
      warmup_epochs=0.0, decay_all=False))
  c.batch_size = 128
  c.num_epochs = 1.0
  c.max_steps = 0
  c.log_every_steps = 50
  c.eval_every_epochs = 1.0
  c.checkpoint_every_steps = 0
  c.keep_checkpoints = 2
  c.fsdp = False
  c.progress_bar = True
  return c


def neuron_kwargs(model_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The neuron settings of ``model_config`` that its neuron kind accepts."""
  accepted = layers.NEURONS[model_config.neuron].__dataclass_fields__
  return {k: model_config[k] for k in NEURON_ARGUMENTS if k in accepted}


def build_model(config: ml_collections.ConfigDict, num_classes: int,
                surrogate: surrogates.AnySurrogate | None = None) -> nn.Module:
  """The model of ``config.model`` (raises ValueError for any bad model setting).

  ``surrogate``: ``config.model.surrogate`` already parsed (:func:`validate`
  returns it); None parses it here.
  """
  m = config.model
  validation.check_choice("model.neuron", m.neuron, layers.NEURONS)
  validation.check_choice("model.dtype", m.dtype, DTYPES)
  return models.create(
      m.name, num_classes=num_classes, T=m.T,
      sml_heads=tuple(config.sml.heads) if config.sml.enabled else (),
      head_channels=config.sml.head_channels, head_bias=config.sml.head_bias, neuron=m.neuron,
      neuron_kwargs=neuron_kwargs(m),
      surrogate=surrogates.as_surrogate(m.surrogate) if surrogate is None else surrogate,
      width=m.width, dtype=DTYPES[m.dtype], bn_momentum=m.bn_momentum, remat=m.remat,
      conv_init=m.conv_init, dense_init=m.dense_init, **m.options.to_dict())


@dataclasses.dataclass(frozen=True)
class Validated:
  """What :func:`validate` built while checking a config, handed on so nothing is parsed,
  checked or built twice.

  Attributes:
    surrogate: ``config.model.surrogate`` parsed: the one parse of a run.
    model: the model of ``config.model`` for ``config.data.num_classes`` classes (10 when
      the source decides; ``model.clone(num_classes=n)`` gives it the dataset's count).
  """

  surrogate: surrogates.AnySurrogate
  model: nn.Module


def import_modules(imports: Any) -> None:
  """Imports ``config.imports``: module names, or paths of .py files (each run once per process).

  Raises:
    ValueError: an entry that is not a string, or that cannot be found.
  """
  validation.check(isinstance(imports, (tuple, list)),
                   f"config.imports={imports!r} must be a tuple of module names or .py paths.")
  for entry in imports:
    validation.check(isinstance(entry, str) and entry != "",
                     f"config.imports entry {entry!r} must be a module name or a .py path.")
    if entry.endswith(".py"):
      path = pathlib.Path(entry).expanduser().resolve()
      validation.check(path.is_file(), f"config.imports: {entry!r} is not a file; give an "
                       "existing .py path (absolute, or relative to where you run) or a module "
                       "name.")
      name = f"snnjax_imports.{path.stem}_{abs(hash(str(path)))}"
      if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
          spec.loader.exec_module(module)
        except BaseException:
          del sys.modules[name]
          raise
    else:
      try:
        importlib.import_module(entry)
      except ModuleNotFoundError as error:
        raise ValueError(f"config.imports: cannot import {entry!r} ({error}); give an importable "
                         "module name or a .py path.") from None


def validate(config: ml_collections.ConfigDict) -> Validated:
  """Checks every value that can be checked without data or devices; raises ValueError.

  The one validation of a run: the data block (:func:`snnjax.data.validate_config`),
  the estimator block (:func:`snnjax.estimators.validate_config`) and the model
  (built here) are checked too, and what was built is returned.
  """
  check, choice, positive = validation.check, validation.check_choice, validation.check_positive
  import_modules(config.imports)
  check(validation.is_int(config.model.T) and config.model.T >= 1,
        f"config.model.T={config.model.T} must be >= 1 time step.")
  surrogate = surrogates.as_surrogate(config.model.surrogate)
  choice("loss.name", config.loss.name, steps.LOSSES)
  choice("gradient", config.gradient, steps.GRADIENTS)
  check(config.gradient != "sltt" or not config.model.options.get("bn_per_step", False),
        "config.gradient='sltt' runs one time step at a time, but model.options.bn_per_step=True "
        "keeps BatchNorm parameters per step; use one of the two.")
  choice("optimizer.name", config.optimizer.name, optim.OPTIMIZERS)
  choice("optimizer.schedule", config.optimizer.schedule, optim.SCHEDULES)
  choice("optimizer.schedule_unit", config.optimizer.schedule_unit, optim.SCHEDULE_UNITS)
  positive("optimizer.learning_rate", config.optimizer.learning_rate)
  positive("optimizer.weight_decay", config.optimizer.weight_decay, strict=False)
  positive("loss.lipschitz_weight", config.loss.lipschitz_weight, strict=False)
  check(0 <= config.sml.lam <= 1, f"config.sml.lam={config.sml.lam} must lie in [0, 1].")
  positive("sml.temperature", config.sml.temperature)
  positive("sml.alpha", config.sml.alpha, strict=False)
  positive("batch_size", config.batch_size)
  positive("num_epochs", config.num_epochs)
  positive("max_steps", config.max_steps, strict=False)
  positive("log_every_steps", config.log_every_steps)
  positive("eval_every_epochs", config.eval_every_epochs)
  positive("checkpoint_every_steps", config.checkpoint_every_steps, strict=False)
  positive("keep_checkpoints", config.keep_checkpoints)
  check(not config.sml.enabled or bool(config.sml.heads),
        "config.sml.enabled=True needs heads: set config.sml.heads, e.g. '(3, 6)', "
        "or --config.sml.enabled=False.")
  check(not config.sml.enabled or config.loss.name == "ce",
        f"config.loss.name={config.loss.name!r} cannot combine with SML, whose loss has its own "
        "CE terms; use loss.name='ce' or --config.sml.enabled=False.")
  estimators.validate_config(config.estimator, surrogate)
  data.validate_config(config.data)
  model = build_model(config, num_classes=config.data.num_classes or 10, surrogate=surrogate)
  return Validated(surrogate=surrogate, model=model)


def _tuples(value):
  """JSON lists back to the tuples the config schema uses."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


#: Keys added to the schema whose default differs from what runs made before them did:
#: a saved config without the key takes this value, so it still means what it meant.
LEGACY_VALUES = {("sml", "head_bias"): False}


def load_saved_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The resolved config a run saved as WORKDIR/config.json, over today's defaults.

  Keys added to the schema after the run was made take their defaults, or
  their :data:`LEGACY_VALUES` where the default would change the run.
  """
  path = workdir / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: --workdir must be a folder that train.py wrote.")
  saved = _tuples(json.loads(path.read_text()))
  config = base_config()
  config.update(saved)
  for (group, key), value in LEGACY_VALUES.items():
    if isinstance(saved.get(group), dict) and key not in saved[group]:
      config[group][key] = value
  return config


RESUMABLE_KEYS = frozenset({
    "max_steps", "log_every_steps", "eval_every_epochs", "checkpoint_every_steps",
    "keep_checkpoints", "progress_bar", "fsdp", "model.remat", "data.folder", "data.data_dir",
    "data.eval_split", "data.worker_count", "data.read_threads", "data.prefetch_buffer_size"})
"""Keys a resumed run may change freely: where data lives, how often to log, evaluate and save,
how long to run, memory layout. Every other key changes what the checkpoint means."""


def flat_values(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """``{"model.T": 4, ...}``: every leaf of ``config`` by its dotted key, as JSON values."""
  flat: dict[str, Any] = {}

  def visit(prefix: str, node: Any) -> None:
    if isinstance(node, dict) and node:
      for key, value in node.items():
        visit(f"{prefix}{key}.", value)
    else:
      flat[prefix[:-1]] = node

  visit("", json.loads(config.to_json_best_effort()))
  return flat


def changed_keys(saved: ml_collections.ConfigDict, current: ml_collections.ConfigDict
                 ) -> list[tuple[str, Any, Any]]:
  """``(key, saved value, current value)`` for every key that differs, resumable ones excluded."""
  before, after = flat_values(saved), flat_values(current)
  return [(k, before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys())
          if before.get(k) != after.get(k) and k not in RESUMABLE_KEYS]


def check_resume_config(saved: ml_collections.ConfigDict, current: ml_collections.ConfigDict,
                        workdir: pathlib.Path, allow_change: bool) -> list[str]:
  """Raises ValueError if ``current`` changes what the checkpoints in ``workdir`` mean.

  Returns the changed keys (empty if none) when ``allow_change`` permits them.
  """
  changes = changed_keys(saved, current)
  if changes and not allow_change:
    listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes[:8])
    more = f" (and {len(changes) - 8} more)" if len(changes) > 8 else ""
    raise ValueError(
        f"{workdir} was trained with another config: {listed}{more}. Use a fresh --workdir, "
        "or pass --allow_config_change to resume with the new values (the old config.json "
        "is kept in config_history/).")
  return [k for k, _, _ in changes]


def save_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> pathlib.Path | None:
  """Writes WORKDIR/config.json atomically; a different older one moves to config_history/.

  Returns where the old config went, or None if there was none or it was the same.
  """
  path = workdir / "config.json"
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if path.is_file() and path.read_text() == text:
    return None
  kept = None
  if path.is_file():
    history = workdir / "config_history"
    history.mkdir(exist_ok=True)
    kept = history / f"config.{time.strftime('%Y%m%d-%H%M%S')}.{time.time_ns() % 10**9}.json"
    os.replace(path, kept)
  temporary = path.with_name("config.json.tmp")
  temporary.write_text(text)
  os.replace(temporary, path)
  return kept
