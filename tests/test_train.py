"""The training system: sharded steps, config errors, train.py end to end, resume, multi-process."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from snnjax import estimators, evaluate, probe, robustness
from snnjax.train import checkpoint, loop, metrics, sharding, steps
from snnjax.train import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


TINY = {
    "model.name": "vgg_small", "model.T": 2, "model.width": 0.0625, "sml.enabled": True,
    "sml.heads": (2,), "sml.head_channels": 8, "optimizer.learning_rate": 0.01,
    "batch_size": 16, "progress_bar": False, "optimizer.warmup_epochs": 0.0,
}
SYNTHETIC = {
    "data.source": "synthetic", "data.synthetic.shape": (8, 8, 1),
    "data.synthetic.num_train_examples": 512, "data.synthetic.num_eval_examples": 64,
    "data.augment.crop_padding": 1, "log_every_steps": 4,
}


def tiny_config(**overrides):
  """A VGG-small at 1/16 width, T=2, one SML head, on 8x8 synthetic images."""
  c = config_lib.base_config()
  for key, value in {**TINY, **SYNTHETIC, **overrides}.items():
    target = c
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def run_train(workdir, overrides, env=None, extra=(), **popen_kwargs):
  """Starts train.py on the default config with ``--config.key=value`` overrides; returns the Popen."""
  flags = [f"--config.{k}={v if isinstance(v, str) else repr(v)}" for k, v in overrides.items()]
  cmd = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/fmnist_vgg_sml.py"),
         "--workdir", str(workdir), *flags, *extra]
  cwd = popen_kwargs.pop("cwd", REPO)
  return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **popen_kwargs)


def finish(process, timeout=300):
  out, _ = process.communicate(timeout=timeout)
  return process.returncode, out


def restored_params(workdir):
  """(step, parameters as NumPy) of a run's latest checkpoint, with the run's own config.json."""
  workdir = pathlib.Path(workdir)
  experiment = loop.prepare(config_lib.load_saved_config(workdir), workdir)
  state, _, step = experiment.checkpointer.restore_latest(experiment.template)
  experiment.checkpointer.close()
  return step, jax.tree.map(np.asarray, jax.device_get(state.params))


def assert_trees_close(a, b, atol=1e-6):
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(x, y, rtol=0, atol=atol)


def assert_trees_close_up_to_spike_flips(a, b, atol=1e-5, flip_atol=1e-3, max_flip_share=5e-3):
  """Equal within ``atol`` except a few elements moved by a spike that float rounding flipped.

  Summation order differs between device layouts; a membrane within rounding
  error of the threshold then fires in one and not the other, a discrete change.
  """
  x = np.concatenate([np.ravel(l) for l in jax.tree.leaves(a)])
  y = np.concatenate([np.ravel(l) for l in jax.tree.leaves(b)])
  diff = np.abs(x - y)
  assert diff.max() < flip_atol
  assert np.mean(diff > atol) < max_flip_share


# --- Sharding -------------------------------------------------------------------------------


# SGD, not Adam: the SM head's FC bias feeds a BatchNorm, so its exact gradient is 0 and its
# computed one is rounding noise, which Adam's g / sqrt(v) would scale up to the learning rate.
SHARDING_TX = optax.sgd(1e-2, momentum=0.9)


def _step_on(mesh, config, state, batch, fsdp=False):
  model = config_lib.build_model(config, num_classes=10)
  tx = SHARDING_TX
  abstract = jax.eval_shape(lambda: state)
  state_sharding = sharding.state_shardings(abstract, mesh, fsdp=fsdp, fsdp_min_size=64)
  step = jax.jit(steps.make_train_step(model, tx, config, lambda s: 1e-2),
                 in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=(state_sharding, sharding.replicated(mesh)))
  state = jax.device_put(state, state_sharding)
  batch = sharding.global_batch(batch, mesh)
  for _ in range(2):
    state, _ = step(state, batch)
  return state, batch


def test_eight_devices_give_the_same_step_as_one():
  assert jax.device_count() == 8
  config = tiny_config()
  model = config_lib.build_model(config, num_classes=10)
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
           "label": rng.integers(0, 10, 16).astype(np.int32)}
  state = steps.init_state(model, SHARDING_TX, jax.random.key(0),
                           jnp.asarray(batch["image"]), lipschitz=False)
  one, _ = _step_on(sharding.make_mesh(jax.devices()[:1]), config, state, batch)
  eight, sharded_batch = _step_on(sharding.make_mesh(), config, state, batch)
  fsdp, _ = _step_on(sharding.make_mesh(), config, state, batch, fsdp=True)

  assert sharded_batch["image"].sharding.spec == P(sharding.DATA_AXIS)
  assert len(sharded_batch["image"].addressable_shards) == 8
  assert sharded_batch["image"].addressable_shards[0].data.shape == (2, 8, 8, 1)
  kernel = eight.params["conv2"]["kernel"]
  assert kernel.sharding.is_fully_replicated
  fsdp_kernel = fsdp.params["conv7"]["kernel"]
  assert not fsdp_kernel.sharding.is_fully_replicated
  for other in (eight, fsdp):
    assert_trees_close_up_to_spike_flips(jax.device_get(one.params), jax.device_get(other.params))
    assert_trees_close_up_to_spike_flips(jax.device_get(one.batch_stats),
                                         jax.device_get(other.batch_stats))


def test_fsdp_spec_splits_largest_divisible_axis():
  assert sharding.fsdp_spec((3, 3, 64, 128), 8, 1) == P(None, None, None, sharding.DATA_AXIS)
  assert sharding.fsdp_spec((3, 3, 64, 130), 8, 1) == P(None, None, sharding.DATA_AXIS)
  assert sharding.fsdp_spec((7, 5), 8, 1) == P()
  assert sharding.fsdp_spec((3, 3, 64, 128), 8, 10**9) == P()


# --- Bad input: clear errors before anything compiles -----------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("model.surrogate", "atanh", "unknown surrogate 'atanh'"),
    ("model.surrogate", "rectangle(alpha=-1)", "alpha > 0"),
    ("model.T", 0, "T=0 must be >= 1"),
    ("sml.heads", (9,), "out of range.*valid indices are 1..7"),
    ("model.name", "resnet99", "unknown model 'resnet99'"),
    ("model.neuron", "izhikevich", "model.neuron='izhikevich' unknown; allowed"),
    ("loss.name", "mse", "loss.name='mse' unknown; allowed"),
    ("loss.name", "tet", "cannot combine with SML"),
    ("optimizer.name", "lamb", "optimizer.name='lamb' unknown; allowed"),
    ("optimizer.learning_rate", 0.0, "learning_rate=0.0 must be > 0"),
    ("sml.lam", 1.5, "lam=1.5 must lie in"),
    ("data.source", "kaggle", "source='kaggle' unknown"),
    ("gradient", "rtrl", "gradient='rtrl' unknown; allowed: bptt, sltt"),
])
def test_bad_config_values_are_named(key, value, message):
  with pytest.raises(ValueError, match=message):
    config_lib.validate(tiny_config(**{key: value}))


def test_sml_without_heads_is_rejected():
  with pytest.raises(ValueError, match="needs heads"):
    config_lib.validate(tiny_config(**{"sml.heads": ()}))


def test_batch_not_divisible_by_devices(tmp_path):
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices.*=8"):
    loop.prepare(tiny_config(batch_size=12), tmp_path)


def test_missing_data_folder(tmp_path):
  config = tiny_config(**{"data.source": "fashion_mnist_idx", "data.folder": str(tmp_path / "no")})
  with pytest.raises((ValueError, FileNotFoundError), match="dataset-fashion-mnist"):
    loop.prepare(config, tmp_path / "run")


@pytest.mark.parametrize("override, message", [
    ("--config.model.widht=0.5",
     "error: --config.model.widht: no such config key; did you mean --config.model.width?"),
    ("--config.batch_size=abc", "error: --config.batch_size=abc: config.batch_size must be an "
                                "integer, not 'abc'."),
    ("--config.data.augment.flip=maybe", "must be True or False, not 'maybe'."),
    ("--config.model.surrogate=atn", "unknown surrogate 'atn'; did you mean 'atan'?"),
])
def test_config_errors_in_train_py_are_one_line(tmp_path, override, message):
  code, out = finish(run_train(tmp_path / "run", {}, extra=(override,)))
  assert code == 2
  lines = out.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], out
  assert not (tmp_path / "run").exists()


def test_a_config_argument_the_file_refuses_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, "train.py", "--config", "configs/fmnist_best.py:gpu",
                           "--workdir", str(tmp_path / "run")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "unknown budget; choose from full, cpu" in lines[0], result.stderr
  assert "Traceback" not in result.stderr + result.stdout
  assert not (tmp_path / "run").exists()


def _train_step_entries(folder):
  return sorted(p.name for p in pathlib.Path(folder).glob("*train_step*"))


def test_train_py_keeps_compiled_programs_in_the_persistent_cache(tmp_path, monkeypatch):
  """Default folder under $XDG_CACHE_HOME; a rerun reads the train step back; empty = off."""
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  flags = {**TINY, **SYNTHETIC, "max_steps": 2}
  cache = tmp_path / "xdg" / "snnjax" / "jax_compilation_cache"
  for run in ("first", "second"):
    code, out = finish(run_train(tmp_path / run, flags,
                                 env={"XDG_CACHE_HOME": str(tmp_path / "xdg")}))
    assert code == 0, out
    if run == "first":
      entries = _train_step_entries(cache)
      assert len(entries) == 1, sorted(p.name for p in cache.glob("*"))
  assert _train_step_entries(cache) == entries   # read back, not compiled and stored again


def test_the_compilation_cache_folder_is_the_users_when_set(tmp_path, monkeypatch):
  from snnjax import compilation_cache
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "")
  assert compilation_cache.enable() is None   # set but empty: off
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
  assert compilation_cache.enable() == str(tmp_path / "mine")
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compilation_cache.default_dir() == tmp_path / "xdg/snnjax/jax_compilation_cache"
  monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no_such_folder")   # cannot be created: off
  assert compilation_cache.enable() is None
  monkeypatch.delenv("XDG_CACHE_HOME")
  assert compilation_cache.default_dir() == pathlib.Path.home() / ".cache/snnjax/jax_compilation_cache"


# --- End to end on real Fashion-MNIST ----------------------------------------------------------


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_train_then_evaluate_on_real_fashion_mnist(tmp_path):
  workdir = tmp_path / "fmnist"
  flags = {**TINY, "max_steps": 24, "log_every_steps": 6, "optimizer.learning_rate": 0.01,
           "data.eval_split": "test[:2000]"}
  code, out = finish(run_train("fmnist", flags, cwd=tmp_path))  # a relative --workdir, as in the README
  assert code == 0, out
  assert "final test accuracy" in out
  records = metrics.read_metrics(workdir)
  train = [r for r in records if r["kind"] == "train"]
  evals = [r for r in records if r["kind"] == "eval"]
  assert len(train) == 4 and len(evals) == 1
  assert train[-1]["loss"] < train[0]["loss"]
  assert evals[0]["test_accuracy"] > 0.2
  assert all("firing_rate/sn2" in r and r["images_per_s"] > 0 for r in train)
  # Compilation (tens of seconds) happens before the first window: its rate is like the others.
  assert train[0]["images_per_s"] > 0.3 * max(r["images_per_s"] for r in train[1:])
  assert not any(k.startswith(("chi/", "surrogate/", "halfwidth/")) for k in train[0])
  head = out[:out.index("compiled train step in")]
  for row in ("run       fresh start in", "devices   ", "model     vgg_small", "params    ",
              "data      fashion_mnist_idx: train 60,000", "schedule  "):
    assert row in head, head
  assert "compiling train step ..." in head
  assert (workdir / "config.json").is_file()
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  assert checkpoint.check_workdir(workdir, require_checkpoint=True) == [24]

  result = subprocess.run([sys.executable, "-m", "snnjax.evaluate", "--workdir", str(workdir)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  assert f"test accuracy {evals[0]['test_accuracy']:.4f}" in result.stdout
  assert "sn1" in result.stdout and "E_SNN" in result.stdout

  assert probe.main(["--workdir", str(workdir), "--directions", "4", "--batch-size", "16",
                     "--out", str(tmp_path / "probe.md"), "--plot", str(tmp_path / "probe.png")]) == 0
  probe_table = (tmp_path / "probe.md").read_text()
  assert "conv1" in probe_table and "fc" in probe_table and (tmp_path / "probe.png").stat().st_size
  assert robustness.main(["--workdir", str(workdir), "--gaussian", "0,0.2", "--salt-pepper", "0.1",
                          "--out", str(tmp_path / "noise.md")]) == 0
  noise_table = (tmp_path / "noise.md").read_text()
  assert f"| gaussian | 0 | {100 * evals[0]['test_accuracy']:.2f} |" in noise_table


def test_evaluate_without_checkpoint_is_a_clear_error(tmp_path):
  result = subprocess.run([sys.executable, "-m", "snnjax.evaluate", "--workdir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "No checkpoint folder" in result.stderr


# --- Resume ------------------------------------------------------------------------------------


RESUME_FLAGS = {**TINY, **SYNTHETIC, "max_steps": 32, "checkpoint_every_steps": 4,
                "eval_every_epochs": 100.0}


# --- Multi-process -----------------------------------------------------------------------------


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  flags = {**RESUME_FLAGS, "max_steps": 8, "batch_size": 8}
  one_device = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  port = _free_port()
  workers = [run_train(tmp_path / "multi", flags, env=one_device,
                       extra=(f"--coordinator_address=localhost:{port}", "--num_processes=2",
                              f"--process_id={i}")) for i in range(2)]
  single = run_train(tmp_path / "single", flags,
                     env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  for process in (*workers, single):
    code, out = finish(process)
    assert code == 0, out
  assert_trees_close_up_to_spike_flips(restored_params(tmp_path / "multi")[1],
                                       restored_params(tmp_path / "single")[1])


# --- Every experiment config loads and validates -----------------------------------------------


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.py")), ids=lambda p: p.stem)
def test_every_config_file_validates(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for config in [module.get_config()] + [module.get_config(b) for b in getattr(module, "BUDGETS", ())]:
    config_lib.validate(config)
    assert config.model.T >= 1


# --- Estimators in the train step ---------------------------------------------------------------


def test_train_step_applies_the_surrogate_schedule_and_chi_controller_without_retracing():
  config = tiny_config(**{"model.surrogate": "rectangle(alpha=1.0)", "sml.enabled": False})
  config.estimator.chi.update(dict(enabled=True, target=0.9, every_steps=1, max_change=1.1))
  model = config_lib.build_model(config, num_classes=10)
  tx = optax.adamw(1e-3)
  estimator = estimators.make_estimator(config.estimator, config.model.surrogate,
                                       steps_per_epoch=10, total_steps=10)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}
  state = steps.init_state(model, tx, jax.random.key(0), batch["image"], lipschitz=False)
  traces = []
  train_step = steps.make_train_step(model, tx, config, lambda s: 1e-3, estimator)

  @jax.jit
  def counted_step(state, batch):
    traces.append(1)
    return train_step(state, batch)

  alphas = []
  for _ in range(3):
    state, step_metrics = counted_step(state, batch)
    alphas.append(float(state.surrogate["sn1"]["alpha"]))
  assert len(traces) == 1
  # Target 0.9 is above the measured support fraction: the half-width grows, alpha falls.
  assert alphas[0] < 1.0 and alphas[2] < alphas[1] < alphas[0]
  assert 0 < float(step_metrics["support_fraction/sn1"]) < 0.9
  assert "chi/conv2" in step_metrics and "halfwidth/sn1" in step_metrics


def test_bfloat16_compute_keeps_float32_parameters():
  config = tiny_config(**{"model.dtype": "bfloat16"})
  model = config_lib.build_model(config, num_classes=10)
  tx = optax.adamw(1e-2)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(16, 8, 8, 1)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}
  state = steps.init_state(model, tx, jax.random.key(0), batch["image"], lipschitz=False)
  step = jax.jit(steps.make_train_step(model, tx, config, lambda s: 1e-2))
  new_state, step_metrics = step(state, batch)
  assert np.isfinite(float(step_metrics["loss"]))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new_state.params))
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params)))


def test_a_run_parses_its_surrogate_and_validates_its_config_once(tmp_path, monkeypatch):
  """One parse of config.model.surrogate and one validation of each block per run: the
  objects they build are passed on (model, estimator, train step), never rebuilt."""
  from snnjax import data, surrogates
  calls = {"parse": 0, "data": 0, "estimator": 0}

  def counted(name, function):
    def wrapper(*args, **kwargs):
      calls[name] += 1
      return function(*args, **kwargs)
    return wrapper

  monkeypatch.setattr(surrogates, "parse", counted("parse", surrogates.parse))
  counted_data = counted("data", data.validate_config)
  monkeypatch.setattr(data, "validate_config", counted_data)
  monkeypatch.setattr(data.config, "validate_config", counted_data)  # what the pipeline calls
  monkeypatch.setattr(estimators, "validate_config", counted("estimator",
                                                             estimators.validate_config))
  config = tiny_config(**{"model.surrogate": "triangle(gamma=0.5)", "max_steps": 2,
                          "estimator.chi.enabled": True, "estimator.chi.every_steps": 1})
  results = loop.train_and_evaluate(config, tmp_path / "run")
  assert 0 <= results["test_accuracy"] <= 1
  assert calls == {"parse": 1, "data": 1, "estimator": 1}
  # Analysing the finished run opens the test split alone, and its checkpoint restores.
  opened = []
  open_dataset = data.open_dataset
  monkeypatch.setattr(data, "open_dataset",
                      lambda block, split, **kw: opened.append(split) or open_dataset(block, split,
                                                                                      **kw))
  experiment = loop.prepare(config, tmp_path / "run", read_only=True)
  try:
    assert opened == [config.data.eval_split] and experiment.train_data is None
    _, _, step = experiment.checkpointer.restore_latest(experiment.template)
  finally:
    experiment.checkpointer.close()
  assert step == 2


def test_your_own_surrogate_trains_from_the_command_line(tmp_path):
  """A five-line module registers a surrogate; config.imports makes train.py and evaluate
  import it, and --config.model.surrogate names it with its own parameter value."""
  (tmp_path / "my_surrogates.py").write_text(
      "import jax.numpy as jnp\n"
      "from snnjax import surrogates\n\n"
      "@surrogates.register('laplace', a=2.0)\n"
      "def laplace(x, a):\n"
      "  return a / 2 * jnp.exp(-a * jnp.abs(x))\n")
  flags = {**TINY, **SYNTHETIC, "max_steps": 2, "model.surrogate": "laplace(a=3)",
           "imports": ("my_surrogates.py",), "estimator.schedule.param": "a",
           "estimator.schedule.kind": "linear", "estimator.schedule.start": 3.0,
           "estimator.schedule.end": 1.0, "estimator.schedule.unit": "step"}
  code, out = finish(run_train(tmp_path / "run", flags, cwd=tmp_path))
  assert code == 0, out
  train = [r for r in metrics.read_metrics(tmp_path / "run") if r["kind"] == "train"]
  assert "surrogate/sn1/a" in train[-1] and train[-1]["surrogate/sn1/a"] < 3.0
  result = subprocess.run([sys.executable, "-m", "snnjax.evaluate", "--workdir",
                           str(tmp_path / "run")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  code, out = finish(run_train(tmp_path / "bad", {**flags, "model.surrogate": "laplase(a=3)"},
                               cwd=tmp_path))
  assert code == 2 and "unknown surrogate 'laplase'; did you mean 'laplace'?" in out, out


def test_metric_writer_does_not_import_pytorch(tmp_path):
  """tensorboardX imports PyTorch when it is installed (1.4 s of a start); snnjax's writer
  keeps it out, and PyTorch stays importable afterwards."""
  script = f"""
import importlib.util, pathlib, sys
from snnjax.train import metrics
writer = metrics.MetricWriter(pathlib.Path({str(tmp_path)!r}))
writer.write("train", 1, {{"loss": 0.5}})
writer.close()
assert "torch" not in sys.modules, "tensorboardX imported torch"
events = list(pathlib.Path({str(tmp_path)!r}, "tensorboard").glob("events*"))
assert len(events) == 1 and events[0].stat().st_size > 0
if importlib.util.find_spec("torch") is not None:
  import torch
  print("torch", torch.__version__)
print("ok")
"""
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().endswith("ok")
