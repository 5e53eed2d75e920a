"""Tests for snnjax.train.checkpoint: round trips, retention, corruption, errors, sharding."""

import os
import sys

# tests/conftest.py asks for 8 simulated CPU devices; do the same when this file
# runs on its own. It only takes effect before JAX is imported.
if "jax" not in sys.modules and "device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()

import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from flax import struct  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from snnjax import surrogates  # noqa: E402
from snnjax.train import checkpoint as ckpt_lib  # noqa: E402
from snnjax.train.checkpoint import Checkpointer  # noqa: E402

LOGGER = "snnjax.train.checkpoint"

# After a failed read, tensorstore completes the other pending reads into
# orbax's already closed event loop ("Exception ignored in: None ... Event loop
# is closed"): harmless noise.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning")


@struct.dataclass
class TrainState:
  params: Any
  batch_stats: Any
  surrogate: Any
  opt_state: Any
  step: jax.Array
  rng: jax.Array


def make_state(width: int = 4, seed: int = 0, step: int = 0) -> TrainState:
  """A small but realistic train state; ``seed`` makes the values distinct."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  params = {"conv": {"kernel": jax.random.normal(k1, (3, 3, 1, width))},
            "head": {"kernel": jax.random.normal(k2, (width, 10)),
                     "bias": jnp.full((10,), 0.5 + seed)}}
  tx = optax.adamw(1e-3, weight_decay=1e-4)
  opt_state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = tx.update(grads, opt_state, params)  # non-zero mu, nu, count
  return TrainState(
      params=params,
      batch_stats={"bn": {"mean": jnp.arange(width, dtype=jnp.float32),
                          "var": jnp.ones((width,))}},
      surrogate=surrogates.atan(alpha=2.0 + seed),
      opt_state=opt_state,
      step=jnp.asarray(step, jnp.int32),
      rng=jax.random.key_data(jax.random.key(seed + 100)))


def assert_trees_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert np.asarray(a).dtype == np.asarray(e).dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def save_steps(directory, states_and_metrics, **kwargs):
  """Saves {step: (state, metrics)} and closes the checkpointer."""
  with Checkpointer(directory, **kwargs) as ckpt:
    for step, (state, metrics) in states_and_metrics.items():
      ckpt.save(step, state, data_state={"position": step}, metrics=metrics)


def step_folders(directory) -> list[str]:
  return sorted(p.name for p in pathlib.Path(directory).iterdir() if p.name[0].isdigit())


def test_round_trip_is_exact(tmp_path):
  state = make_state(seed=1, step=7)
  data_state = {"epoch": 3, "position": 1234, "order": [2, 0, 1], "source": "fmnist"}
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(7, state, data_state=data_state, metrics={"test_accuracy": 0.5})
  template = make_state(seed=2)  # same shapes, different values
  restored_state, restored_data, step = Checkpointer(tmp_path).restore_latest(template)
  assert step == 7
  assert isinstance(restored_state, TrainState)
  assert restored_state.surrogate.name == "atan"
  assert_trees_equal(restored_state, state)
  assert restored_state.rng.dtype == jnp.uint32
  assert restored_data == data_state


def test_restore_onto_abstract_template_without_sharding(tmp_path):
  state = make_state(seed=3)
  with Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, state)
    abstract = jax.eval_shape(lambda: state)
    restored, data_state = ckpt.restore(1, abstract)
  assert data_state == {}
  assert isinstance(restored, TrainState)
  assert_trees_equal(restored, state)


def test_empty_folder_has_no_checkpoint(tmp_path):
  ckpt = Checkpointer(tmp_path / "checkpoints")
  assert ckpt.restore_latest(make_state()) is None
  assert (ckpt.latest_step(), ckpt.best_step(), ckpt.all_steps()) == (None, None, [])
  ckpt.close()


def test_retention_keeps_last_k_and_the_older_best(tmp_path):
  accuracies = [0.1, 0.9, 0.3, 0.2, 0.4, 0.5]
  saves = {i + 1: (make_state(seed=i), {"test_accuracy": a}) for i, a in enumerate(accuracies)}
  save_steps(tmp_path, saves, keep_last=2)
  assert step_folders(tmp_path) == ["2", "5", "6"]
  ckpt = Checkpointer(tmp_path, keep_last=2)  # metrics are read back from disk
  assert (ckpt.all_steps(), ckpt.best_step(), ckpt.latest_step()) == ([2, 5, 6], 2, 6)
  assert ckpt.metrics(2) == {"test_accuracy": 0.9}
  restored, data_state = ckpt.restore(2, make_state())
  assert_trees_equal(restored, saves[2][0])
  assert data_state == {"position": 2}
  ckpt.save(7, make_state(seed=7), metrics={"test_accuracy": 0.95})  # a new best
  ckpt.save(8, make_state(seed=8), metrics={})  # no metric: not a best candidate
  ckpt.close()
  assert step_folders(tmp_path) == ["7", "8"]


def test_retention_min_mode_and_without_best(tmp_path):
  losses = {1: 0.3, 2: 0.1, 3: 0.5, 4: 0.4}
  saves = {s: (make_state(seed=s), {"loss": v}) for s, v in losses.items()}
  save_steps(tmp_path / "min", saves, keep_last=1, best_metric="loss", best_mode="min")
  assert step_folders(tmp_path / "min") == ["2", "4"]
  save_steps(tmp_path / "last", saves, keep_last=2, keep_best=False)
  assert step_folders(tmp_path / "last") == ["3", "4"]


def _truncate_data_files(step_dir: pathlib.Path):
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files
  for p in files:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _largest_data_file(step_dir: pathlib.Path) -> pathlib.Path:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files
  return max(files, key=lambda p: p.stat().st_size)


def _flip_bit(step_dir: pathlib.Path) -> pathlib.Path:
  """Flips one bit in the middle of the step's largest array data file; returns that file."""
  path = _largest_data_file(step_dir)
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x08
  path.write_bytes(bytes(data))
  return path


CORRUPTIONS = {
    "flipped_bit": _flip_bit,
    "truncated_data": _truncate_data_files,
    "missing_manifest": lambda d: (d / "state" / "manifest.ocdbt").unlink(),
    "garbage_metadata": lambda d: (d / "state" / "_METADATA").write_bytes(b"\x00garbage{"),
    "missing_data_state": lambda d: (d / "data_state" / "metadata").unlink(),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_latest_falls_back_with_warning(tmp_path, caplog, corrupt):
  states = {s: make_state(seed=s, step=s) for s in (1, 2, 3)}
  save_steps(tmp_path, {s: (st, None) for s, st in states.items()})
  corrupt(tmp_path / "3")
  ckpt = Checkpointer(tmp_path)
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    state, data_state, step = ckpt.restore_latest(make_state())
  assert step == 2
  assert_trees_equal(state, states[2])
  assert data_state == {"position": 2}
  warnings = [r.getMessage() for r in caplog.records
              if r.name == LOGGER and r.levelno == logging.WARNING]
  assert any("step 3" in m and "unreadable" in m for m in warnings), warnings
  assert step_folders(tmp_path) == ["1", "2", "3"]  # nothing deleted
  assert ckpt.latest_step() == 2

  # Training goes on from step 2 and reaches step 3 again: the unreadable
  # folder is renamed aside, never deleted, and the new step 3 is restorable.
  new_state = make_state(seed=30, step=3)
  assert ckpt.save(3, new_state, data_state={"position": 3})
  ckpt.close()
  assert (tmp_path / "3.unreadable").is_dir()
  assert (tmp_path / "3" / "checksums.json").is_file()
  state, _, step = Checkpointer(tmp_path).restore_latest(make_state())
  assert step == 3
  assert_trees_equal(state, new_state)


def test_unreadable_checkpoints_are_kept_and_not_counted(tmp_path, caplog):
  save_steps(tmp_path, {s: (make_state(seed=s), None) for s in (1, 2, 3)}, keep_last=2)
  CORRUPTIONS["missing_manifest"](tmp_path / "3")
  ckpt = Checkpointer(tmp_path, keep_last=2)
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    assert ckpt.restore_latest(make_state())[2] == 2
  for s in (4, 5):  # the last 2 readable: 4, 5; unreadable 3 stays, 1 and 2 go
    ckpt.save(s, make_state(seed=s))
  ckpt.close()
  assert step_folders(tmp_path) == ["3", "4", "5"]


def test_an_unreadable_best_is_kept_and_the_best_readable_one_too(tmp_path, caplog):
  accuracies = {1: 0.9, 2: 0.1, 3: 0.2}
  save_steps(tmp_path, {s: (make_state(seed=s), {"test_accuracy": a})
                        for s, a in accuracies.items()}, keep_last=1)
  assert step_folders(tmp_path) == ["1", "3"]
  _flip_bit(tmp_path / "1")
  ckpt = Checkpointer(tmp_path, keep_last=1)
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    assert ckpt.restore_best(make_state())[2] == 3
  assert ckpt.best_step() == 3
  ckpt.save(4, make_state(seed=4), metrics={"test_accuracy": 0.15})
  ckpt.save(5, make_state(seed=5), metrics={"test_accuracy": 0.05})
  ckpt.close()
  # Unreadable 1 stays; 3 is the best readable one; 5 the last; 4 goes.
  assert step_folders(tmp_path) == ["1", "3", "5"]
  ckpt = Checkpointer(tmp_path, keep_last=1, read_only=True)
  assert (ckpt.best_step(), ckpt.metrics(1)) == (1, {"test_accuracy": 0.9})  # a new object
  ckpt.close()


def test_layout_is_orbax_items_and_a_manifest(tmp_path):
  """The step folder layout that checkpoints of earlier versions have, and still restore from."""
  save_steps(tmp_path, {1: (make_state(seed=1), {"test_accuracy": 0.5})})
  step_dir = tmp_path / "1"
  assert {"state", "data_state", "metrics", "checksums.json"} <= {p.name for p in step_dir.iterdir()}
  assert json.loads((step_dir / "metrics" / "metrics").read_text()) == {"test_accuracy": 0.5}
  assert json.loads((step_dir / "data_state" / "metadata").read_text()) == {"position": 1}


def test_garbled_metrics_do_not_block_restore(tmp_path, caplog):
  save_steps(tmp_path, {1: (make_state(seed=1), {"test_accuracy": 0.9}),
                        2: (make_state(seed=2), {"test_accuracy": 0.1})})
  (tmp_path / "1" / "metrics" / "metrics").write_text("{not json")
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    ckpt = Checkpointer(tmp_path)
  assert any("step 1" in r.getMessage() for r in caplog.records if r.name == LOGGER)
  assert ckpt.best_step() == 2  # step 1's metric is unknown now
  assert ckpt.restore_latest(make_state())[2] == 2
  assert_trees_equal(ckpt.restore(1, make_state())[0], make_state(seed=1))
  ckpt.close()


def test_no_readable_checkpoint_raises_and_deletes_nothing(tmp_path, caplog):
  save_steps(tmp_path, {s: (make_state(seed=s), None) for s in (1, 2)})
  for s in ("1", "2"):
    CORRUPTIONS["missing_manifest"](tmp_path / s)
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    with pytest.raises(ckpt_lib.UnreadableCheckpointError, match="none can be read"):
      Checkpointer(tmp_path).restore_latest(make_state())
  assert step_folders(tmp_path) == ["1", "2"]


def test_mismatched_template_names_path_step_and_fix(tmp_path):
  save_steps(tmp_path, {1: (make_state(width=4), None), 2: (make_state(width=4), None)})
  ckpt = Checkpointer(tmp_path)
  with pytest.raises(ValueError) as info:
    ckpt.restore_latest(make_state(width=8))
  message = str(info.value)
  assert isinstance(info.value, ckpt_lib.CheckpointMismatchError)
  assert f"{tmp_path / '2'}" in message and "step 2" in message
  assert "does not match the model/config" in message and "--workdir" in message
  assert "8 shapes differ" in message
  assert "batch_stats.bn.mean: (4,) in checkpoint vs (8,) in model" in message

  extra = make_state(width=4)
  extra = extra.replace(params={**extra.params, "new_layer": {"kernel": jnp.zeros(3)}})
  with pytest.raises(ValueError, match=r"not in the checkpoint \(params\.new_layer\.kernel\)"):
    ckpt.restore(1, extra)
  ckpt.close()


def test_restore_reshards_onto_the_template_sharding(tmp_path):
  n = jax.device_count()
  assert n >= 1
  mesh = Mesh(np.array(jax.devices()), ("data",))
  rows = jax.device_put(jnp.arange(2 * n * 3.0).reshape(2 * n, 3), NamedSharding(mesh, P("data")))
  state = {"w": rows, "b": jax.device_put(jnp.ones(3), NamedSharding(mesh, P()))}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state)
  # Restore with the row sharding swapped for replication and vice versa.
  wanted = {"w": NamedSharding(mesh, P()), "b": NamedSharding(mesh, P("data"))}
  wanted["b"] = NamedSharding(mesh, P()) if 3 % n else wanted["b"]
  template = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=wanted[k])
              for k, v in state.items()}
  restored, _, _ = Checkpointer(tmp_path).restore_latest(template)
  for k in state:
    assert isinstance(restored[k], jax.Array)
    assert restored[k].sharding.is_equivalent_to(wanted[k], restored[k].ndim)
    assert len(restored[k].addressable_shards) == n
    np.testing.assert_array_equal(restored[k], state[k])
  # A template of real sharded arrays gives their sharding back.
  restored, _, _ = Checkpointer(tmp_path).restore_latest(state)
  assert restored["w"].sharding.is_equivalent_to(rows.sharding, 2)
  if n >= 2:
    assert {s.data.shape for s in restored["w"].addressable_shards} == {(2, 3)}


def test_async_save_survives_donated_buffers(tmp_path):
  state = make_state(seed=5)
  expected = jax.tree.map(np.asarray, state)
  ckpt = Checkpointer(tmp_path)
  ckpt.save(1, state)
  for leaf in jax.tree.leaves(state):  # as a donating train step would
    leaf.delete()
  ckpt.wait_until_finished()
  restored, _ = ckpt.restore(1, make_state())
  assert_trees_equal(restored, expected)
  ckpt.close()


def test_saving_an_existing_step_again_is_skipped(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(1, make_state(seed=1))
    assert not ckpt.save(1, make_state(seed=2))
    restored, _ = ckpt.restore(1, make_state())
  assert_trees_equal(restored, make_state(seed=1))


def test_bad_inputs_fail_before_writing(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    with pytest.raises(TypeError, match="data_state must be JSON-serialisable"):
      ckpt.save(1, make_state(), data_state={"x": object()})
    with pytest.raises(TypeError, match="metrics must be a dict"):
      ckpt.save(1, make_state(), metrics=0.5)
    assert ckpt.all_steps() == []
    with pytest.raises(FileNotFoundError, match="No checkpoint for step 9"):
      ckpt.restore(9, make_state())
  for kwargs in ({"keep_last": 0}, {"best_mode": "best"}, {"best_metric": ""}):
    with pytest.raises(ValueError):
      Checkpointer(tmp_path, **kwargs)


def test_metrics_accept_array_scalars(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, make_state(), metrics={"test_accuracy": jnp.float32(0.25)})
    ckpt.save(2, make_state(), metrics={"test_accuracy": np.float64(0.75)})
  ckpt = Checkpointer(tmp_path)
  assert ckpt.metrics(2) == {"test_accuracy": 0.75} and ckpt.best_step() == 2
  ckpt.close()


def test_check_workdir_errors(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(NotADirectoryError, match="not a directory"):
    ckpt_lib.check_workdir(a_file)
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoints").write_text("x")
  with pytest.raises(NotADirectoryError, match="checkpoints exists but is not a directory"):
    ckpt_lib.check_workdir(tmp_path / "run")
  with pytest.raises(NotADirectoryError):
    Checkpointer(tmp_path / "run" / "checkpoints")

  assert ckpt_lib.check_workdir(tmp_path / "new") == []
  with pytest.raises(FileNotFoundError, match="nothing to resume"):
    ckpt_lib.check_workdir(tmp_path / "new", require_checkpoint=True)
  (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    ckpt_lib.check_workdir(tmp_path / "empty", require_checkpoint=True)

  folder = tmp_path / "good" / "checkpoints"
  save_steps(folder, {1: (make_state(), None), 2: (make_state(), None)})
  assert ckpt_lib.check_workdir(tmp_path / "good", require_checkpoint=True) == [1, 2]
  for s in ("1", "2"):
    CORRUPTIONS["garbage_metadata"](folder / s)
  with pytest.raises(ckpt_lib.UnreadableCheckpointError, match="none can be read"):
    ckpt_lib.check_workdir(tmp_path / "good", require_checkpoint=True)


def test_relative_directory_is_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with Checkpointer("relative/checkpoints", keep_last=1) as c:
    c.save(1, {"w": np.arange(3.0)})
    c.wait_until_finished()
    assert c.directory.is_absolute()
  assert (tmp_path / "relative" / "checkpoints" / "1").is_dir()


# Checksum manifests.


def _warnings(caplog) -> list[str]:
  return [r.getMessage() for r in caplog.records
          if r.name == LOGGER and r.levelno == logging.WARNING]


def _files_of(step_dir: pathlib.Path) -> set[str]:
  return {p.relative_to(step_dir).as_posix() for p in step_dir.rglob("*")
          if p.is_file() and p.name != "checksums.json"}


def test_flipped_bit_is_detected_and_named(tmp_path, caplog):
  states = {s: make_state(seed=s, step=s) for s in (1, 2)}
  save_steps(tmp_path, {s: (st, None) for s, st in states.items()})
  flipped = _flip_bit(tmp_path / "2").relative_to(tmp_path / "2").as_posix()
  ckpt = Checkpointer(tmp_path)
  with pytest.raises(ckpt_lib.UnreadableCheckpointError) as info:
    ckpt.restore(2, make_state())
  message = str(info.value)
  assert f"checksum mismatch in {flipped}" in message and "step 2" in message
  assert str(tmp_path / "2") in message
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    state, _, step = ckpt.restore_latest(make_state())
  assert step == 1
  assert_trees_equal(state, states[1])
  assert any("step 2" in m and "checksum mismatch" in m for m in _warnings(caplog))
  ckpt.close()
  assert step_folders(tmp_path) == ["1", "2"]


def test_every_committed_step_gets_a_manifest(tmp_path):
  save_steps(tmp_path, {s: (make_state(seed=s), {"test_accuracy": s / 10}) for s in (1, 2, 3)})
  assert step_folders(tmp_path) == ["1", "2", "3"]
  for s in ("1", "2", "3"):
    step_dir = tmp_path / s
    manifest = json.loads((step_dir / "checksums.json").read_text())
    assert set(manifest["files"]) == _files_of(step_dir)
    assert any(name.startswith("state/") for name in manifest["files"])
    data = _largest_data_file(step_dir)
    record = manifest["files"][data.relative_to(step_dir).as_posix()]
    assert record == {"size": data.stat().st_size,
                      "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    assert not list(step_dir.glob("*.tmp"))
  ckpt = Checkpointer(tmp_path)  # the extra file does not confuse orbax
  assert ckpt.all_steps() == [1, 2, 3] and ckpt.best_step() == 3
  assert_trees_equal(ckpt.restore(2, make_state())[0], make_state(seed=2))
  ckpt.close()


def test_sync_save_writes_its_manifest_at_once(tmp_path):
  ckpt = Checkpointer(tmp_path, async_save=False)
  ckpt.save(1, make_state())
  assert (tmp_path / "1" / "checksums.json").is_file()
  ckpt.close()


def test_a_failed_manifest_write_only_warns(tmp_path, caplog, monkeypatch):
  def no_space(step_dir):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(ckpt_lib, "write_manifest", no_space)
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    with Checkpointer(tmp_path, async_save=False) as ckpt:
      assert ckpt.save(1, make_state(seed=1))
  assert any("step 1" in m and "No space left" in m for m in _warnings(caplog))
  assert not (tmp_path / "1" / "checksums.json").exists()
  assert_trees_equal(Checkpointer(tmp_path).restore(1, make_state())[0], make_state(seed=1))


def test_manifests_only_for_steps_saved_by_this_object(tmp_path):
  save_steps(tmp_path, {1: (make_state(seed=1), None)})
  (tmp_path / "1" / "checksums.json").unlink()
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(2, make_state(seed=2))
    ckpt.restore(1, make_state())
  assert not (tmp_path / "1" / "checksums.json").exists()
  assert (tmp_path / "2" / "checksums.json").is_file()


def test_checkpoint_without_manifest_restores_unverified(tmp_path, caplog):
  states = {s: make_state(seed=s) for s in (1, 2)}
  save_steps(tmp_path, {s: (st, None) for s, st in states.items()})
  (tmp_path / "2" / "checksums.json").unlink()
  ckpt = Checkpointer(tmp_path)
  with caplog.at_level(logging.INFO, logger=LOGGER):
    state, data_state, step = ckpt.restore_latest(make_state())
  assert step == 2 and data_state == {"position": 2}
  assert_trees_equal(state, states[2])
  infos = [r.getMessage() for r in caplog.records
           if r.name == LOGGER and r.levelno == logging.INFO]
  assert any("step 2" in m and "unverified" in m for m in infos), infos
  assert not any("step 1" in m and "unverified" in m for m in infos)
  ckpt.close()


def test_garbled_manifest_makes_the_step_unreadable(tmp_path, caplog):
  save_steps(tmp_path, {s: (make_state(seed=s), None) for s in (1, 2)})
  (tmp_path / "2" / "checksums.json").write_text("{not json")
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    assert Checkpointer(tmp_path).restore_latest(make_state())[2] == 1
  assert any("step 2" in m and "checksums.json is garbled" in m for m in _warnings(caplog))


def test_retention_deletes_old_steps_with_manifests(tmp_path):
  accuracies = {1: 0.9, 2: 0.1, 3: 0.2, 4: 0.3, 5: 0.4}
  save_steps(tmp_path, {s: (make_state(seed=s), {"test_accuracy": a})
                        for s, a in accuracies.items()}, keep_last=1)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "5"]  # nothing left over
  for s in ("1", "5"):
    assert (tmp_path / s / "checksums.json").is_file()
  save_steps(tmp_path / "sync", {s: (make_state(seed=s), None) for s in (1, 2, 3)},
             keep_last=1, async_save=False)
  assert sorted(p.name for p in (tmp_path / "sync").iterdir()) == ["3"]


def test_changed_metrics_do_not_count_as_best(tmp_path, caplog):
  save_steps(tmp_path, {1: (make_state(seed=1), {"test_accuracy": 0.2}),
                        2: (make_state(seed=2), {"test_accuracy": 0.1})})
  metrics = tmp_path / "2" / "metrics" / "metrics"
  metrics.write_text(metrics.read_text().replace("0.1", "0.9"))  # still valid JSON
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    ckpt = Checkpointer(tmp_path)
  assert ckpt.best_step() == 1
  assert any("step 2" in m and "checksum mismatch in metrics/metrics" in m
             for m in _warnings(caplog))
  assert ckpt.restore(2, make_state())[1] == {"position": 2}  # the state is still fine
  ckpt.close()


def test_restore_best_falls_back_to_the_next_best(tmp_path, caplog):
  accuracies = {1: 0.3, 2: 0.9, 3: None, 4: 0.5, 5: 0.1}
  states = {s: make_state(seed=s, step=s) for s in accuracies}
  save_steps(tmp_path, {s: (states[s], None if a is None else {"test_accuracy": a})
                        for s, a in accuracies.items()}, keep_last=5)
  ckpt = Checkpointer(tmp_path, keep_last=5)
  state, data_state, step = ckpt.restore_best(make_state())
  assert (step, data_state) == (2, {"position": 2})
  assert_trees_equal(state, states[2])

  _flip_bit(tmp_path / "2")
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    state, _, step = ckpt.restore_best(make_state())
  assert step == 4
  assert_trees_equal(state, states[4])
  warned = _warnings(caplog)
  assert any("step 2" in m and "checksum mismatch" in m and "step 4 next" in m
             for m in warned), warned

  # No scored step is readable: restore_latest's order (newest first) applies.
  for s in (1, 4, 5):
    CORRUPTIONS["missing_manifest"](tmp_path / str(s))
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    state, _, step = ckpt.restore_best(make_state())
  assert step == 3
  assert_trees_equal(state, states[3])
  assert {m.split()[2] for m in _warnings(caplog)} == {"2", "4", "1", "5"}
  ckpt.close()
  assert step_folders(tmp_path) == ["1", "2", "3", "4", "5"]  # nothing deleted


def test_restore_best_on_an_empty_folder_or_without_readable_steps(tmp_path, caplog):
  assert Checkpointer(tmp_path / "empty").restore_best(make_state()) is None
  save_steps(tmp_path, {1: (make_state(), {"test_accuracy": 0.5})})
  _flip_bit(tmp_path / "1")
  with caplog.at_level(logging.WARNING, logger=LOGGER):
    with pytest.raises(ckpt_lib.UnreadableCheckpointError, match="none can be read"):
      Checkpointer(tmp_path).restore_best(make_state())


# Permission errors.


def test_permission_message_names_path_and_fix(tmp_path):
  step_dir = tmp_path / "7"
  data = step_dir / "state" / "d" / "abc"
  denied = PermissionError(13, "Permission denied", str(data))
  tensorstore_like = ValueError(
      'PERMISSION_DENIED: Error reading local file "x": Failed to open: '
      f'"{data}": Permission denied [tensorstore_spec=\'{{"context": 1}}\']')
  try:
    raise RuntimeError("restore failed") from denied
  except RuntimeError as e:
    chained = e
  for cause in (denied, tensorstore_like, chained):
    message = ckpt_lib._unreadable_message(step_dir, 7, cause)
    assert "permission denied" in message and "step 7" in message, message
    assert str(data) in message, message
    assert "chmod" in message and "owns" in message, message
    assert "tensorstore_spec" not in message, message
  other = ckpt_lib._unreadable_message(step_dir, 7, ValueError("garbage in _METADATA"))
  assert "permission denied" not in other and "garbage in _METADATA" in other


def test_unreadable_data_file_says_permission_denied(tmp_path, caplog):
  save_steps(tmp_path, {s: (make_state(seed=s), None) for s in (1, 2)})
  files = [p for p in (tmp_path / "2" / "state").rglob("*") if p.parent.name == "d"]
  for p in files:
    p.chmod(0)
  try:
    if os.access(files[0], os.R_OK):
      pytest.skip("chmod 000 does not stop this user (root) from reading")
    ckpt = Checkpointer(tmp_path)
    for drop_manifest in (False, True):  # caught by the manifest check, then by tensorstore
      if drop_manifest:
        (tmp_path / "2" / "checksums.json").unlink()
      with pytest.raises(ckpt_lib.UnreadableCheckpointError) as info:
        ckpt.restore(2, make_state())
      message = str(info.value)
      assert "permission denied" in message and str(tmp_path / "2" / "state") in message
      assert "chmod" in message
    with caplog.at_level(logging.WARNING, logger=LOGGER):
      assert ckpt.restore_latest(make_state())[2] == 1
    ckpt.close()
  finally:
    for p in files:
      p.chmod(0o644)
