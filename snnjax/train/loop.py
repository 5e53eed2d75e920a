"""The training loop: ``train_and_evaluate(config, workdir)``.

One readable loop. Every bad setting is rejected before anything compiles
(:func:`snnjax.train.config.validate`, the data pipeline, the batch/device
check). A rerun with the same workdir resumes from the newest good checkpoint,
with the data iterator where it was, so it reaches the same parameters as an
uninterrupted run.

What keeps a run whole on a cluster (docs/FAULTS.md): process 0 holds
``WORKDIR/lock`` (:mod:`snnjax.train.workdir_lock`) and stops before its next
write if another run took that over; a resume must keep the
config's meaning (:func:`snnjax.train.config.check_resume_config`); SIGTERM or
SIGINT ends the run after a checkpoint of the step reached
(:mod:`snnjax.train.preemption`); a failed write of a checkpoint, metrics or
TensorBoard events stops it (:mod:`snnjax.train.failures`); and no checkpoint
is written from a state with non-finite values.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import math
import pathlib
import time
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from snnjax import console, data, estimators
from snnjax.train import checkpoint, failures, metrics, optim, preemption, run_summary, sharding
from snnjax.train import steps
from snnjax.train import workdir_lock
from snnjax.train import config as config_lib

log = logging.getLogger("snnjax")

#: Steps dispatched ahead of the last finished one: enough to keep the device busy, few
#: enough that the progress bar counts finished steps.
MAX_STEPS_IN_FLIGHT = 2


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


class WorkdirBusyError(RuntimeError):
  """Another run holds the workdir's lock (raised on processes other than 0)."""


def _open_split(config: ml_collections.ConfigDict, train: bool) -> data.DataPipeline:
  """The training (shuffled, augmented) or test pipeline of this process's shard."""
  split = config.data.train_split if train else config.data.eval_split
  return data.open_dataset(config.data, split, train=train,
                           batch_size=config.batch_size // jax.process_count(), seed=config.seed,
                           shard_index=jax.process_index(), shard_count=jax.process_count())


def _schedule_lengths(config: ml_collections.ConfigDict, steps_per_epoch: int) -> tuple[int, int]:
  """(steps the schedule spans, steps this run takes)."""
  total = max(1, int(math.ceil(config.num_epochs * steps_per_epoch)))
  run = min(total, config.max_steps) if config.max_steps else total
  return total, run


def evaluate(eval_step, state: steps.TrainState, batches: Iterable[dict], mesh,
             num_batches: int | None = None, progress: bool = False) -> dict[str, float]:
  """One pass over ``batches`` (an eval split): accuracy, mean loss, firing rates.

  Padding rows (``mask`` False) are left out. ``progress`` shows a bar over the
  ``num_batches`` batches (it closes when done).
  """
  totals: dict[str, float] = {}
  batches = tqdm(batches, total=num_batches, desc="eval", unit="batch", leave=False,
                 disable=not progress, dynamic_ncols=True)
  for batch in batches:
    sums = jax.device_get(eval_step(state, sharding.global_batch(batch, mesh)))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  count = totals.pop("count")
  results = {"test_accuracy": totals.pop("correct") / count,
             "test_loss": totals.pop("loss") / count}
  results.update({k: v / count for k, v in totals.items()})
  return results


def _with_initial_surrogate(init, estimator: estimators.Estimator):
  """``init`` followed by the surrogate update at step 0 (a schedule's starting values)."""
  def init_with_schedule(key):
    state = init(key)
    return state.replace(surrogate=estimator.update(state.surrogate, jnp.int32(0), {}))
  return init_with_schedule


@dataclasses.dataclass
class Experiment:
  """What a config resolves to: data, model, optimiser, shardings, checkpoints.

  ``train_data`` is None when read-only (:func:`prepare`).
  """

  config: ml_collections.ConfigDict
  mesh: Any
  train_data: data.DataPipeline | None
  test_data: data.DataPipeline
  model: Any
  tx: Any
  schedule: Any
  total_steps: int
  run_steps: int
  init: Any
  state_sharding: Any
  template: Any
  checkpointer: checkpoint.Checkpointer
  estimator: estimators.Estimator


def prepare(config: ml_collections.ConfigDict, workdir: pathlib.Path,
            read_only: bool = False) -> Experiment:
  """Validates ``config`` and builds everything a run needs; nothing is compiled yet.

  ``read_only`` is for analysing a finished run: the checkpoints open for reading
  alone and no training pipeline is opened (shapes come from the test split). The
  schedules then span one step per epoch; they only shape the optimiser state,
  whose structure does not depend on their lengths, and the restored state
  replaces what they would start from.
  """
  validated = config_lib.validate(config)
  checkpoint.check_workdir(workdir)
  mesh = sharding.make_mesh()
  sharding.check_batch_divides(config.batch_size, mesh)
  train_data = None if read_only else _open_split(config, train=True)
  test_data = _open_split(config, train=False)
  shapes = test_data if read_only else train_data
  steps_per_epoch = 1 if read_only else train_data.steps_per_epoch
  model = validated.model.clone(num_classes=shapes.num_classes)
  total_steps, run_steps = _schedule_lengths(config, steps_per_epoch)
  tx, schedule = optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps)
  sample = jnp.zeros((config.batch_size, *shapes.image_shape), jnp.float32)
  init = lambda key: steps.init_state(model, tx, key, sample,
                                      lipschitz=bool(config.loss.lipschitz_weight))
  estimator = estimators.make_estimator(config.estimator, validated.surrogate,
                                       steps_per_epoch, total_steps)
  init = _with_initial_surrogate(init, estimator)
  abstract_state = jax.eval_shape(init, jax.random.key(config.seed))
  state_sharding = sharding.state_shardings(abstract_state, mesh, fsdp=config.fsdp)
  template = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract_state, state_sharding)
  checkpointer = checkpoint.Checkpointer(workdir / "checkpoints", keep_last=config.keep_checkpoints,
                                         read_only=read_only)
  return Experiment(config, mesh, train_data, test_data, model, tx, schedule, total_steps,
                    run_steps, init, state_sharding, template, checkpointer, estimator)


def compiled_eval_step(experiment: Experiment):
  return jax.jit(steps.make_eval_step(experiment.model, experiment.config.data.encoding),
                 in_shardings=(experiment.state_sharding, sharding.batch_sharding(experiment.mesh)),
                 out_shardings=sharding.replicated(experiment.mesh))


def announce(message: str) -> None:
  """A line on stdout from process 0 (above the progress bar if one is shown)."""
  if jax.process_index() == 0:
    tqdm.write(message)


def compile_timed(what: str, jitted, *args):
  """``jitted`` compiled ahead of time for ``args``, announcing it and the seconds it took."""
  announce(f"compiling {what} ...")
  started = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  announce(f"compiled {what} in {time.perf_counter() - started:.1f} s")
  return compiled


class LazyCompiled:
  """A jitted function compiled (and announced) once, by :meth:`compile` or its first call."""

  def __init__(self, what: str, jitted):
    self.what, self.jitted, self.compiled = what, jitted, None

  def compile(self, *args) -> None:
    """Compiles for ``args`` (arrays or ``jax.ShapeDtypeStruct``) unless already compiled."""
    if self.compiled is None:
      self.compiled = compile_timed(self.what, self.jitted, *args)

  def __call__(self, *args):
    self.compile(*args)
    return self.compiled(*args)


def eval_batch_spec(experiment: Experiment) -> dict[str, jax.ShapeDtypeStruct]:
  """The global eval batch's shapes, dtypes and sharding (what the eval step is compiled for)."""
  batch = experiment.config.batch_size
  placed = sharding.batch_sharding(experiment.mesh)
  return {"image": jax.ShapeDtypeStruct((batch, *experiment.test_data.image_shape), jnp.float32,
                                        sharding=placed),
          "label": jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=placed),
          "mask": jax.ShapeDtypeStruct((batch,), jnp.bool_, sharding=placed)}


def _lock_workdir(workdir: pathlib.Path) -> workdir_lock.WorkdirLock | None:
  """Process 0 locks WORKDIR; every process learns whether it could (one writer per workdir)."""
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = workdir_lock.acquire(workdir)
    except workdir_lock.WorkdirLockedError as e:
      error = e
  if jax.process_count() > 1:
    locked = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not locked and error is None:
      raise WorkdirBusyError(f"process 0 could not lock {workdir}; its error names the run "
                             "holding it.")
  if error is not None:
    raise error
  return lock


def _ensure_workdir_held(lock: workdir_lock.WorkdirLock | None, step: int) -> None:
  """Called before every write to the workdir; refreshes process 0's heartbeat.

  Raises WorkdirLockLostError on every process once process 0's lock file no
  longer holds its record (another run took the workdir over, or the lock was
  deleted), so that nothing more is written over the other run's files.
  """
  held = lock.heartbeat(force=True) if lock is not None else True
  if jax.process_count() > 1:
    held = bool(multihost_utils.broadcast_one_to_all(np.int32(held)))
  if held:
    return
  if lock is None:
    raise workdir_lock.WorkdirLockLostError(
        f"process 0 lost the workdir lock; stopped at step {step} without writing")
  raise workdir_lock.WorkdirLockLostError(
      workdir_lock.lost_message(lock.path, lock.current_holder(), step))


def _check_config_identity(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                           allow_config_change: bool) -> None:
  """On resume: ``config`` must mean what the checkpoints' config.json says (ValueError if not)."""
  if (workdir / "config.json").is_file():
    changed = config_lib.check_resume_config(config_lib.load_saved_config(workdir), config,
                                             workdir, allow_config_change)
    if changed:
      log.warning("resuming with a changed config (--allow_config_change): %s", ", ".join(changed))


def _record_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """Process 0 writes config.json; a different older one is kept in config_history/."""
  if jax.process_index() == 0:
    kept = config_lib.save_config(workdir, config)
    if kept is not None:
      log.info("config.json changed; the previous one is kept as %s", kept.relative_to(workdir))


def _first_bad_step(fetched: list[dict], first_step: int) -> tuple[int, bool] | None:
  """``(step, loss_was_bad)`` of the first step whose loss or new state holds a NaN/inf."""
  for offset, m in enumerate(fetched):
    loss_bad = not math.isfinite(float(m["loss"]))
    if loss_bad or not float(m[steps.STATE_FINITE]):
      return first_step + offset, loss_bad
  return None


def _stop_on_divergence(checkpointer: checkpoint.Checkpointer, step: int, loss_bad: bool,
                        folder: pathlib.Path) -> NonFiniteLossError:
  """Sets aside checkpoints whose parameters gave the non-finite loss; the error to raise.

  The loss of step s is computed from the parameters after step s - 1, so a
  non-finite loss at step s condemns a checkpoint of step s - 1 even though its
  values are finite (e.g. 1e30 after a huge learning rate). States with
  non-finite values are never saved (every save follows a check).
  """
  checkpointer.wait_until_finished()
  diverged = [s for s in checkpointer.all_steps() if s >= step - 1] if loss_bad else []
  moved = [checkpointer.set_aside(s, "diverged").name for s in diverged]
  last = checkpointer.latest_step()
  kept = (f"the last checkpoint, step {last} in {folder}, holds finite values and a finite loss"
          if last is not None else f"no checkpoint in {folder} holds a finite state")
  aside = f"; set aside {', '.join(moved)}" if moved else ""
  what = "loss" if loss_bad else "parameters or optimiser state"
  return NonFiniteLossError(
      f"non-finite {what} at step {step}; stopping ({kept}{aside}). "
      "Lower optimizer.learning_rate or set optimizer.clip_norm.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       allow_config_change: bool = False) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns final metrics.

  The result has ``"preempted": True`` when SIGTERM/SIGINT stopped the run after
  it saved a checkpoint at ``result["step"]``.

  Raises:
    ValueError: a bad config, or (on resume) a config that changes the meaning
      of the checkpoints, unless ``allow_config_change``.
    WorkdirLockedError: another live run holds ``workdir``.
    WriteFailure: a checkpoint, metrics or TensorBoard write failed (disk full, ...).
    NonFiniteLossError: the loss or the state became NaN/inf.
    WorkdirLockLostError: another run took ``workdir`` over (or its lock was
      deleted) while this one trained; nothing more was written.
  """
  workdir = pathlib.Path(workdir).absolute()
  experiment = prepare(config, workdir)
  lock = _lock_workdir(workdir)
  try:
    with preemption.StopRequests() as stop:
      return _train(experiment, workdir, allow_config_change, lock, stop)
  finally:
    if lock is not None:
      lock.release()


def _train(experiment: Experiment, workdir: pathlib.Path, allow_config_change: bool,
           lock: workdir_lock.WorkdirLock | None, stop: preemption.StopRequests) -> dict[str, Any]:
  config = experiment.config
  mesh, checkpointer = experiment.mesh, experiment.checkpointer
  train_data, test_data = experiment.train_data, experiment.test_data
  run_steps = experiment.run_steps
  if checkpointer.all_steps():
    _check_config_identity(config, workdir, allow_config_change)
  restored = checkpointer.restore_latest(experiment.template)
  if restored is None:
    init = jax.jit(experiment.init, out_shardings=experiment.state_sharding)
    state = init(jax.random.key(config.seed))
  else:
    state, data_state, restored_step = restored
    train_data.set_state(data_state)
  for line in run_summary.summary_lines(
      config, mesh=mesh, params=experiment.template.params, train=train_data, test=test_data,
      total_steps=experiment.total_steps, run_steps=run_steps, workdir=workdir,
      restored_step=None if restored is None else restored[2]):
    announce(line)
  _record_config(config, workdir)

  train_step = jax.jit(steps.make_train_step(experiment.model, experiment.tx, config,
                                             experiment.schedule, experiment.estimator),
                       in_shardings=(experiment.state_sharding, sharding.batch_sharding(mesh)),
                       out_shardings=(experiment.state_sharding, sharding.replicated(mesh)),
                       donate_argnums=0)
  eval_step = LazyCompiled("eval step", compiled_eval_step(experiment))

  writer = metrics.MetricWriter(workdir, enabled=jax.process_index() == 0,
                                resume_step=None if restored is None else restored[2])
  eval_every = max(1, int(round(config.eval_every_epochs * train_data.steps_per_epoch)))
  step = int(jax.device_get(state.step))
  pending: list[dict] = []
  in_flight: collections.deque = collections.deque()  # dispatched steps' metrics, oldest first
  window_start, window_step = time.perf_counter(), step
  last_eval: dict[str, float] = {}
  bar_enabled = bool(config.progress_bar) and jax.process_index() == 0
  first_batch = None
  if step < run_steps:
    first_batch = sharding.global_batch(next(train_data), mesh)
    train_step = compile_timed("train step", train_step, state, first_batch)
  bar = tqdm(total=run_steps, initial=step, disable=not bar_enabled, unit="step",
             dynamic_ncols=True)
  checkpoints = workdir / "checkpoints"

  def flush_train_metrics():
    nonlocal pending, window_start, window_step
    if not pending:
      return
    fetched = jax.device_get(pending)
    _ensure_workdir_held(lock, step)
    bad = _first_bad_step(fetched, window_step + 1)
    if bad is not None:
      raise _stop_on_divergence(checkpointer, *bad, checkpoints)
    means = metrics.mean_of_steps(fetched)
    del means[steps.STATE_FINITE]
    elapsed = time.perf_counter() - window_start
    means["images_per_s"] = (step - window_step) * config.batch_size / max(elapsed, 1e-9)
    means["epoch"] = step / train_data.steps_per_epoch
    writer.write("train", step, means)
    bar.update(len(in_flight))  # device_get waited for them
    in_flight.clear()
    bar.set_postfix(bar_fields(means))
    pending, window_start, window_step = [], time.perf_counter(), step

  # Orbax and tensorstore wrap OS errors in any exception type.
  checkpoint_writes = functools.partial(failures.reported_as_write_failure, "a checkpoint",
                                        checkpoints)

  def save(**kwargs):
    _ensure_workdir_held(lock, step)
    with checkpoint_writes():
      checkpointer.save(step, state, data_state=train_data.get_state(), **kwargs)

  preempted = False
  try:
    window_start = time.perf_counter()
    while step < run_steps:
      batch = first_batch if first_batch is not None else sharding.global_batch(
          next(train_data), mesh)
      first_batch = None
      state, step_metrics = train_step(state, batch)
      step += 1
      pending.append(step_metrics)
      in_flight.append(step_metrics["loss"])
      if len(in_flight) > MAX_STEPS_IN_FLIGHT:  # the bar counts finished steps
        in_flight.popleft().block_until_ready()
        bar.update(1)
      with checkpoint_writes():
        checkpointer.check_for_errors()
      saved = False
      if step % config.log_every_steps == 0:
        flush_train_metrics()
      is_last = step == run_steps
      if step % eval_every == 0 or is_last:
        flush_train_metrics()
        eval_step.compile(state, eval_batch_spec(experiment))
        started = time.perf_counter()
        last_eval = evaluate(eval_step, state, test_data.dataset, mesh,
                             test_data.steps_per_epoch, bar_enabled and console.on_terminal())
        last_eval["epoch"] = step / train_data.steps_per_epoch
        _ensure_workdir_held(lock, step)
        writer.write("eval", step, last_eval)
        announce(f"step {step}: test accuracy {last_eval['test_accuracy']:.4f}, test loss "
                 f"{last_eval['test_loss']:.4f} ({test_data.num_examples:,} examples, "
                 f"{time.perf_counter() - started:.1f} s)")
        save(metrics={"test_accuracy": last_eval["test_accuracy"]})
        saved = True
        window_start = time.perf_counter()  # images/s leaves out evaluation and saving
      elif config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
        flush_train_metrics()
        save()
        saved = True
        window_start = time.perf_counter()
      if stop.reached(step):
        flush_train_metrics()
        if not saved:
          save()
        preempted = True
        break
    flush_train_metrics()
    if not last_eval and not preempted:  # resumed a finished run: report its final accuracy again
      eval_step.compile(state, eval_batch_spec(experiment))
      last_eval = evaluate(eval_step, state, test_data.dataset, mesh,
                           test_data.steps_per_epoch, bar_enabled and console.on_terminal())
    with checkpoint_writes():
      checkpointer.wait_until_finished()
  finally:
    bar.close()
    _close_quietly(checkpointer, writer)
  if preempted:
    return {"step": step, "preempted": True, "signal": stop.signal_name}
  return {"step": step, **last_eval}


def bar_fields(means: dict[str, float]) -> dict[str, str]:
  """What the progress bar shows: total loss, the SNN's cross-entropy (SML), accuracy, images/s."""
  fields = {"loss": f"{means['loss']:.3f}"}
  if "ce_main" in means:
    fields["snn_ce"] = f"{means['ce_main']:.3f}"
  fields["acc"] = f"{means['accuracy']:.3f}"
  fields["img_s"] = f"{means['images_per_s']:.0f}"
  return fields


def _close_quietly(checkpointer: checkpoint.Checkpointer, writer: metrics.MetricWriter) -> None:
  """Closes the writers; a failure here is logged, never hides the error that ended the run."""
  for close in (checkpointer.close, writer.close):
    try:
      close()
    except Exception as e:  # pylint: disable=broad-except
      log.warning("while closing after the run: %s: %s", type(e).__name__,
                  (str(e).splitlines() or [""])[0][:300])
