"""The models' rematerialisation option, and smoke runs of the benchmark scripts.

remat="block" / "neuron" must change only what the backward pass keeps: the
same variables, logits, batch statistics and gradients as remat="none".
"""

import functools
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax as sj

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_RESNET = dict(stage_blocks=(1, 2), stage_widths=(4, 8), stem_width=4, hidden=8)


def _tiny(kind, remat, **kwargs):
  """A small model of each block form: residual blocks (class remat) or plain layers (function remat)."""
  common = dict(num_classes=5, T=3, remat=remat, **kwargs)
  if kind == "resnet":
    return sj.models.ResNet(sml_heads=(1,), head_channels=4, **TINY_RESNET, **common)
  if kind == "resnet_ann":
    return sj.models.ResNet(spiking=False, **TINY_RESNET, **common)
  return sj.models.create("vgg_small", width=1 / 16, form=kind, sml_heads=(2,), head_channels=4,
                          **common)


def _logits_and_grads(model, variables, x, labels):
  def loss(params):
    out, updates = model.apply({**variables, "params": params}, x, train=True,
                               mutable=["batch_stats", "intermediates"])
    ce = sj.losses.cross_entropy(out.logits, labels)
    heads = sum(sj.losses.cross_entropy(a, labels) for a in out.aux_logits)
    return ce + heads, (out.logits, updates)

  grads, (logits, updates) = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
  return logits, grads, updates


@functools.cache
def _reference(kind):
  """Input, labels, variables and the remat="none" results of a tiny model (computed once)."""
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3)) + 0.5
  labels = jnp.arange(4) % 5
  base = _tiny(kind, "none")
  variables = base.init(jax.random.key(0), x, train=False)
  return x, labels, variables, _logits_and_grads(base, variables, x, labels)


@pytest.mark.parametrize("kind", ["resnet", "resnet_ann", "isnm", "standard"])
@pytest.mark.parametrize("remat", ["block", "neuron"])
def test_remat_gives_the_same_variables_logits_and_gradients(kind, remat):
  x, labels, variables, (logits, grads, updates) = _reference(kind)
  other = _tiny(kind, remat)
  other_variables = other.init(jax.random.key(0), x, train=False)
  assert jax.tree.structure(variables) == jax.tree.structure(other_variables)
  jax.tree.map(np.testing.assert_array_equal, variables, other_variables)

  r_logits, r_grads, r_updates = _logits_and_grads(other, variables, x, labels)
  np.testing.assert_allclose(r_logits, logits, rtol=1e-6, atol=1e-6)
  assert jax.tree.structure(r_grads) == jax.tree.structure(grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), r_grads, grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               r_updates, updates)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) > 0


def _checkpoints(model, x, variables):
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables)
  return len(re.findall(r"\b(?:remat\d*|checkpoint)\[", str(jaxpr)))  # the primitive's name varies


@pytest.mark.parametrize("kind, blocks, neurons", [("resnet", 3, 8), ("standard", 7, 7)])
def test_remat_wraps_each_block_or_each_neuron(kind, blocks, neurons):
  """block: one jax.checkpoint per block; neuron: one per neuron layer; none: none."""
  x = jnp.ones((2, 16, 16, 3))
  model = _tiny(kind, "none")
  variables = model.init(jax.random.key(0), x, train=False)
  # The heads are not rematerialised and hold no neurons.
  assert _checkpoints(model, x, variables) == 0
  assert _checkpoints(_tiny(kind, "block"), x, variables) == blocks
  assert _checkpoints(_tiny(kind, "neuron"), x, variables) == neurons


def test_unknown_remat_is_a_value_error():
  with pytest.raises(ValueError, match="remat"):
    sj.models.create("resnet19", remat="time")
  with pytest.raises(ValueError, match="remat"):
    sj.models.ResNet(remat="all")


@pytest.mark.parametrize("script", ["train_throughput.py", "memory_vs_T.py"])
def test_benchmark_smoke_run_writes_its_json(script, tmp_path):
  """``--smoke``: snnjax rows only, tiny sizes; exits 0 and writes JSON and Markdown."""
  out = tmp_path / "result.json"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not conftest's 8 devices
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke",
                         "--out", str(out)], capture_output=True, text=True, env=env,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  result = json.loads(out.read_text())
  assert result["records"] and all(r["ok"] for r in result["records"])
  assert all(r["step_s_median"] > 0 and np.isfinite(r["loss"]) for r in result["records"])
  assert len({r["n_params"] for r in result["records"]}) == 1
  assert out.with_suffix(".md").read_text().startswith("###")


def test_config_remat_reaches_the_model_and_is_validated():
  from snnjax.train import config as config_lib
  c = config_lib.base_config()
  c.model.update(dict(name="resnet19", width=0.0625, remat="block"))
  assert config_lib.build_model(c, num_classes=10).remat == "block"
  c.model.remat = "time"
  with pytest.raises(ValueError, match="remat 'time'"):
    config_lib.validate(c)


def test_cpu_remat_flag_is_added_once_and_only_with_remat():
  from snnjax import xla_flags
  assert xla_flags.with_remat_flag("--a=1", "none", cpu_only=True) == "--a=1"
  assert xla_flags.with_remat_flag("--a=1", "block", cpu_only=False) == "--a=1"  # GPUs reject it
  with_flag = xla_flags.with_remat_flag("--a=1", "block", cpu_only=True)
  assert with_flag == f"--a=1 {xla_flags.CPU_REMAT_XLA_FLAG}"
  assert xla_flags.with_remat_flag(with_flag, "neuron", cpu_only=True) == with_flag
  sys.path.insert(0, str(ROOT / "benchmarks"))
  import common as bench_common  # the stdlib-only benchmark driver keeps its own copy
  assert bench_common.CPU_REMAT_XLA_FLAGS == xla_flags.CPU_REMAT_XLA_FLAG


def test_accuracy_benchmark_smoke_run_trains_both_frameworks(tmp_path):
  """``accuracy.py --smoke``: snnjax's train.py and the SpikingJelly twin, 4 steps each."""
  out = tmp_path / "accuracy.json"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), "--smoke",
                         "--out", str(out), "--workdir-root", str(tmp_path / "runs")],
                        capture_output=True, text=True, env=env, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  records = json.loads(out.read_text())["records"]
  assert len(records) == 2
  assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["steps"] == 4 for r in records)
  assert len({(r["n_params"], r["n_params_with_heads"]) for r in records}) == 1


def test_the_conv_flag_is_for_a_cpu_only_jax_unless_the_user_chose(monkeypatch):
  from snnjax import xla_flags
  assert xla_flags.with_conv_flag("--a=1", cpu_only=True) == f"--a=1 {xla_flags.CPU_CONV_XLA_FLAG}"
  assert xla_flags.with_conv_flag("--a=1", cpu_only=False) == "--a=1"
  mine = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
  assert xla_flags.with_conv_flag(mine, cpu_only=True) == mine       # the user's own wins
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "--a=1")
  applied = xla_flags.apply(remat="block")
  assert applied.split() == ["--a=1", xla_flags.CPU_CONV_XLA_FLAG, xla_flags.CPU_REMAT_XLA_FLAG]
  assert os.environ["XLA_FLAGS"] == applied


def test_the_remat_flag_is_only_for_a_cpu_only_jax(monkeypatch):
  from snnjax import xla_flags
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert xla_flags.jax_uses_cpu_only()
  monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
  assert not xla_flags.jax_uses_cpu_only()
