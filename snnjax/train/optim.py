"""Optimisers and learning-rate schedules from a config (optax)."""

from __future__ import annotations

import jax
import ml_collections
import optax

from snnjax import schedules

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
SCHEDULE_UNITS = ("step", "epoch")


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int,
                           total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 over ``warmup_epochs``, then cosine to 0 or constant.

  lr(t) = base * t / W for t < W; cosine: base * (1 + cos(pi u / (S - W))) / 2,
  with W warmup steps, S total steps and u the steps since the warmup:
  u = t - W with ``schedule_unit="step"``; with "epoch", u = P floor((t - W) / P)
  for P steps per epoch, so the rate is constant within an epoch and epoch e
  (0-based) has base * (1 + cos(pi e / E)) / 2, E = (S - W) / P: PyTorch's
  CosineAnnealingLR(T_max=E) stepped once per epoch, as the reference code of
  Surrogate Module Learning does.
  """
  base = config.learning_rate
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  decay_steps = max(total_steps - warmup, 1)
  if config.schedule == "cosine":
    after = optax.cosine_decay_schedule(base, decay_steps)
    if config.get("schedule_unit", "step") == "epoch":
      after = schedules.per_epoch(after, steps_per_epoch)
  else:
    after = optax.constant_schedule(base)
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), after], [warmup])


def _decay_mask(params):
  """Weight decay on kernels only (ndim >= 2), not on biases, BN scales or PLIF's w."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def decay_mask(config: ml_collections.ConfigDict):
  """The weight-decay mask of ``config``: None (every parameter) with ``decay_all``,
  else kernels only (:func:`_decay_mask`, snnjax's default)."""
  return None if config.get("decay_all", False) else _decay_mask


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimiser of ``config`` (the ``optimizer`` sub-config) and its schedule.

  adamw: decoupled weight decay, p <- p - lr (wd p) besides the Adam step
  (torch.optim.AdamW's rule); adam: L2 weight decay added to the gradient (the
  gradual-surrogate recipe's Adam with weight decay); sgd: momentum + L2
  weight decay. Decay reaches kernels only, or every parameter with
  ``decay_all`` (:func:`decay_mask`). Optional global-norm clipping first.
  """
  schedule = learning_rate_schedule(config, steps_per_epoch, total_steps)
  mask = decay_mask(config)
  chain = []
  if config.clip_norm:
    chain.append(optax.clip_by_global_norm(config.clip_norm))
  if config.name == "adamw":
    chain.append(optax.adamw(schedule, b1=config.b1, b2=config.b2,
                             weight_decay=config.weight_decay, mask=mask))
  elif config.name == "adam":
    chain.append(optax.add_decayed_weights(config.weight_decay, mask=mask))
    chain.append(optax.adam(schedule, b1=config.b1, b2=config.b2))
  else:
    chain.append(optax.add_decayed_weights(config.weight_decay, mask=mask))
    chain.append(optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov))
  return optax.chain(*chain), schedule
