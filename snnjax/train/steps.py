"""Train state and the pure train / eval step functions.

The steps are pure: ``(state, batch) -> (state, metrics)``. The loop jits them
with explicit shardings (see :mod:`snnjax.train.sharding`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from snnjax import chi, encoders, energy, estimators, layers, losses

Array = jax.Array
LOSSES = ("ce", "tet")


@struct.dataclass
class TrainState:
  """Everything a run needs to continue, all arrays (checkpointable as one pytree).

  Attributes:
    step: optimiser steps taken, int32 scalar.
    params: trainable parameters (float32).
    batch_stats: BatchNorm running statistics.
    surrogate: per-layer surrogate parameters (non-trainable; schedules and
      controllers update them between steps).
    opt_state: optax state.
    lipschitz: power-iteration vectors of the Lipschitz penalty ({} when off).
    rng: base PRNG key data, uint32 [2]; step t uses fold_in(rng, t).
  """

  step: Array
  params: Any
  batch_stats: Any
  surrogate: Any
  opt_state: Any
  lipschitz: Any
  rng: Array


def model_input(images: Array) -> Array:
  """Batch-major pipeline output -> model input: frames [B, T, ...] become [T, B, ...]."""
  return jnp.swapaxes(images, 0, 1) if images.ndim == 5 else images


#: fold_in constant that derives the train step's encoding key from its dropout key.
ENCODING_STREAM = 1


def encoded_input(images: Array, model: nn.Module, encoding: Mapping | None,
                  key: Array | None = None) -> Array:
  """Pipeline output -> model input under ``encoding`` (``config.data.encoding``; None: direct).

  ``key``: the rate code's key (the train step's); None is evaluation's fixed key
  (:data:`snnjax.encoders.EVAL_KEY_SEED`).
  """
  images = model_input(images)
  return images if encoding is None else encoders.encode(images, encoding, model.T, key)


def init_state(model: nn.Module, tx: optax.GradientTransformation, rng: Array,
               sample_images: Array, lipschitz: bool) -> TrainState:
  """Initial state from a sample batch (pure; jit it with out_shardings).

  The random initialisation uses the non-partitionable threefry: XLA:CPU compiles
  the partitionable variant's generator as one large fusion per parameter shape
  (the default config's init: 32 s -> 11 s of compilation). The values do not
  depend on the device layout either way.
  """
  with jax.threefry_partitionable(False):
    init_key, lipschitz_key, base_key = jax.random.split(rng, 3)
    variables = model.init(init_key, model_input(sample_images), train=False)
    params = variables["params"]
    lipschitz_vectors = losses.lipschitz_init(params, lipschitz_key) if lipschitz else {}
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      surrogate=variables.get(layers.SURROGATE_COLLECTION, {}),
      opt_state=tx.init(params),
      lipschitz=lipschitz_vectors,
      rng=jax.random.key_data(base_key) if jnp.issubdtype(base_key.dtype, jax.dtypes.prng_key)
      else base_key,
  )


def task_loss(config: ml_collections.ConfigDict, out, labels: Array) -> dict[str, Array]:
  """The loss ``config`` selects and its parts; "loss" is the total.

  With ``config.sml.enabled`` the SML loss (heads' logits in ``out.aux_logits``),
  else ``config.loss.name``: "ce" on the time-mean logits or "tet" per step.
  """
  if config.sml.enabled:
    return losses.sml_loss_parts(out.logits, out.aux_logits, labels, alpha=config.sml.alpha,
                                 lam=config.sml.lam, temperature=config.sml.temperature)
  if config.loss.name == "tet":
    return {"loss": losses.tet_loss(out.logits_seq, labels, lam=config.loss.tet_lam)}
  return {"loss": losses.cross_entropy(out.logits, labels)}


def model_variables(state: TrainState, params: Any = None) -> dict[str, Any]:
  """The variables ``model.apply`` takes: ``params`` (default: the state's), BatchNorm
  statistics and the surrogate parameters."""
  return {"params": state.params if params is None else params,
          "batch_stats": state.batch_stats, layers.SURROGATE_COLLECTION: state.surrogate}


STATE_FINITE = "state_finite"
"""Train-step metric: 1 if the loss and every value of the new state are finite, else 0."""


def all_finite(tree: Any) -> Array:
  """1.0 if every floating-point value in ``tree`` is finite, else 0.0."""
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack(flags)).astype(jnp.float32) if flags else jnp.float32(1)


def bptt_gradients(model: nn.Module, config: ml_collections.ConfigDict, params: Any,
                   state: TrainState, inputs: Array, labels: Array, dropout_key: Array) -> tuple:
  """Backpropagation through time: the gradient of the task loss over all T steps at once.

  Returns (grads, loss parts, model output, updated collections: batch_stats, intermediates).
  """

  def loss_fn(params):
    out, updates = model.apply(model_variables(state, params), inputs, train=True,
                               mutable=["batch_stats", layers.ACTIVITY_COLLECTION],
                               rngs={"dropout": dropout_key})
    parts = task_loss(config, out, labels)
    return parts["loss"], (parts, out, updates)

  grads, (parts, out, updates) = jax.grad(loss_fn, has_aux=True)(params)
  return grads, parts, out, updates


def loop_body_settings(model: nn.Module) -> dict[str, Any]:
  """Model settings for running it inside ``jax.lax.scan``: explicit canonical conv gradients
  (:mod:`snnjax.conv`; XLA:CPU's backward convolutions are slow in loop bodies otherwise)."""
  return {"explicit_conv_grads": True} if hasattr(model, "explicit_conv_grads") else {}


def sltt_gradients(model: nn.Module, config: ml_collections.ConfigDict, params: Any,
                   state: TrainState, inputs: Array, labels: Array, dropout_key: Array) -> tuple:
  """Spatial learning through time: the network runs one time step at a time, each step's
  loss is backpropagated at once, and no gradient flows through the membrane across steps.

  From "Towards Memory- and Time-Efficient Backpropagation for Training Spiking
  Neural Networks" (Meng et al., ICCV 2023). With o[t] the logits and L_t the
  task loss (CE, TET or the SML loss) of step t alone,

      L = (1/T) sum_t L_t(o[t], y),    grad = (1/T) sum_t dL_t/dW |_{v[t-1] held constant}

  i.e. every neuron's membrane v[t-1] enters step t as a constant (the temporal
  term dv[t]/dv[t-1] of BPTT is dropped; the spatial path through layers and
  the surrogate at step t is kept). A ``jax.lax.scan`` over t carries the
  membranes (the ``"membrane"`` collection, :mod:`snnjax.layers`) and the summed
  gradient, so activation memory is one time step's, independent of T.

  Interactions, which follow from running one step at a time:
    - BatchNorm normalises each step's batch with that step's statistics (over B,
      not T*B); the running statistics get one update per train step, with the
      mean over steps of the per-step statistics.
    - SML heads read each step's block output (the rate of one step) and the SML
      loss is taken per step; the reported logits are the mean over steps.
    - With loss "ce" the loss is the mean of per-step CEs, not the CE of the
      time-mean logits BPTT uses.

  Returns what :func:`bptt_gradients` returns; per-step metrics are averaged over T.
  """
  step_model = model.clone(T=1, **loop_body_settings(model))
  mutable = ["batch_stats", layers.ACTIVITY_COLLECTION, layers.MEMBRANE_COLLECTION]
  sequence = inputs.ndim == 5  # [T, B, H, W, C] frames or a rate code; else a static batch

  def step_loss(params, membrane, x_t):
    variables = {**model_variables(state, params), layers.MEMBRANE_COLLECTION: membrane}
    x_t = x_t[None] if sequence else inputs
    out, updates = step_model.apply(variables, x_t, train=True, mutable=mutable,
                                    rngs={"dropout": dropout_key})
    parts = task_loss(config, out, labels)
    return parts["loss"] / model.T, (parts, out, updates)

  first = inputs[0] if sequence else None
  shapes = jax.eval_shape(step_loss, params, {}, first)[1][2][layers.MEMBRANE_COLLECTION]
  at_rest = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def one_step(carry, x_t):
    membrane, grads = carry
    step_grads, (parts, out, updates) = jax.grad(step_loss, has_aux=True)(params, membrane, x_t)
    membrane = updates.pop(layers.MEMBRANE_COLLECTION)
    return (membrane, jax.tree.map(jnp.add, grads, step_grads)), (parts, out, updates)

  zero_grads = jax.tree.map(jnp.zeros_like, params)
  (_, grads), (parts, outs, updates) = jax.lax.scan(
      one_step, (at_rest, zero_grads), inputs if sequence else None, length=model.T)
  over_steps = functools.partial(jax.tree.map, lambda v: jnp.mean(v, axis=0))
  out = outs.replace(logits=jnp.mean(outs.logits, axis=0), logits_seq=outs.logits_seq[:, 0],
                     aux_logits=tuple(jnp.mean(a, axis=0) for a in outs.aux_logits))
  return grads, over_steps(parts), out, over_steps(updates)


#: How the gradient reaches the weights through time: ``config.gradient`` -> its function.
TEMPORAL_GRADIENTS = {"bptt": bptt_gradients, "sltt": sltt_gradients}
GRADIENTS = tuple(TEMPORAL_GRADIENTS)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    config: ml_collections.ConfigDict, schedule: optax.Schedule,
                    estimator: estimators.Estimator | None = None
                    ) -> Callable[[TrainState, dict], tuple]:
  """A pure train step: forward (train mode, SML heads on), loss, backward, optax update,
  then the surrogate-state update (schedules, chi controller) for the next step.

  The gradient through time is ``config.gradient`` (:data:`TEMPORAL_GRADIENTS`:
  "bptt", or "sltt" whose memory does not grow with T); the Lipschitz penalty's
  gradient is added to it.

  Metrics: loss and its parts, accuracy of the SNN and of each head, the
  Lipschitz penalty, gradient global norm, learning rate, every neuron layer's
  firing rate (spikes per neuron per time step), and, with an ``estimator``
  (:func:`snnjax.estimators.make_estimator`), the estimator metrics that can change.
  Without one the surrogate parameters stay as initialised.
  """
  lipschitz_weight = config.loss.lipschitz_weight
  encoding = config.data.encoding
  task_gradients = TEMPORAL_GRADIENTS[config.gradient]

  def train_step(state: TrainState, batch: dict[str, Array]):
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    inputs = encoded_input(batch["image"], model, encoding,
                           jax.random.fold_in(dropout_key, ENCODING_STREAM))
    grads, parts, out, updates = task_gradients(model, config, state.params, state, inputs,
                                                batch["label"], dropout_key)
    lipschitz_state = state.lipschitz
    if lipschitz_weight:
      (penalty, lipschitz_state), penalty_grads = jax.value_and_grad(
          losses.lipschitz_penalty, has_aux=True)(state.params, state.lipschitz)
      grads = jax.tree.map(lambda g, p: g + lipschitz_weight * p, grads, penalty_grads)
      parts = {**parts, "lipschitz": penalty, "loss": parts["loss"] + lipschitz_weight * penalty}
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, param_updates),
        batch_stats=updates.get("batch_stats", state.batch_stats),
        opt_state=opt_state,
        lipschitz=lipschitz_state,
    )
    activity = updates.get(layers.ACTIVITY_COLLECTION, {})
    fractions = chi.support_fractions(activity)
    if estimator is not None:
      new_state = new_state.replace(
          surrogate=estimator.update(state.surrogate, new_state.step, fractions))
    metrics = {k: v for k, v in parts.items() if jnp.ndim(v) == 0}
    metrics["accuracy"] = losses.accuracy(out.logits, batch["label"])
    for i, head_logits in enumerate(out.aux_logits):
      metrics[f"head{i + 1}_accuracy"] = losses.accuracy(head_logits, batch["label"])
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics[STATE_FINITE] = all_finite(
        (parts["loss"], new_state.params, new_state.opt_state, new_state.batch_stats))
    metrics["learning_rate"] = schedule(state.step)
    rates = energy.firing_rates(activity)
    metrics.update({f"firing_rate/{name}": rate for name, rate in rates.items()})
    if estimator is not None:
      metrics.update(estimator.metrics(state.surrogate, grads, fractions))
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, encoding: Mapping | None = None
                   ) -> Callable[[TrainState, dict], dict]:
  """A pure eval step (no SML heads): summed loss, correct count, example count, firing rates.

  ``batch["mask"]`` (1 for real rows, 0 for padding) weights every sum; ``encoding``
  is ``config.data.encoding`` (None: direct), with evaluation's fixed rate-code key.
  """

  def eval_step(state: TrainState, batch: dict[str, Array]) -> dict[str, Array]:
    inputs = encoded_input(batch["image"], model, encoding)
    out, updates = model.apply(model_variables(state), inputs, train=False,
                               mutable=[layers.ACTIVITY_COLLECTION])
    mask = batch["mask"].astype(jnp.float32)
    logits = out.logits.astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    sums = {"loss": jnp.sum(nll * mask), "correct": jnp.sum(correct * mask),
            "count": jnp.sum(mask)}
    rates = energy.firing_rates(updates.get(layers.ACTIVITY_COLLECTION, {}))
    # Rates are batch means; weight by the real rows so padding does not dilute them.
    sums.update({f"firing_rate/{name}": rate * jnp.sum(mask) for name, rate in rates.items()})
    return sums

  return eval_step
