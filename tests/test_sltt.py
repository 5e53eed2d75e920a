"""The SLTT gradient (config.gradient="sltt"): online execution, its gradient, its memory.

SLTT runs the network one time step at a time, carrying each neuron's membrane
in the "membrane" collection, and backpropagates each step's loss with the
membrane held constant (snnjax.train.steps.sltt_gradients).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax as sj
from snnjax.train import config as config_lib
from snnjax.train import optim, steps
from test_train import assert_trees_close, tiny_config

MEMBRANE = sj.layers.MEMBRANE_COLLECTION


def _online_logits(model, variables, x):
  """Per-step logits [T, B, C] of ``model`` run one step at a time with carried membranes."""
  step_model, membrane, logits = model.clone(T=1), {}, []
  for _ in range(model.T):
    out, updates = step_model.apply({**variables, MEMBRANE: membrane}, x, train=False,
                                    mutable=[MEMBRANE])
    membrane = updates[MEMBRANE]
    logits.append(out.logits_seq[0])
  return jnp.stack(logits)


@pytest.mark.parametrize("neuron", ["lif", "plif", "if"])
def test_one_step_at_a_time_with_carried_membranes_is_the_whole_sequence(neuron):
  model = sj.models.create("vgg_small", width=1 / 16, num_classes=5, T=3, neuron=neuron,
                           form="standard", bn_momentum=0.0)
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 1)) + 0.5
  variables = model.init(jax.random.key(0), x, train=False)
  assert MEMBRANE not in variables
  # Running statistics = one batch's (momentum 0), so that the neurons fire in eval mode.
  _, stats = model.apply(variables, x, train=True, mutable=["batch_stats"])
  variables = {**variables, **stats}
  whole = model.apply(variables, x, train=False).logits_seq
  online = _online_logits(model, variables, x)
  np.testing.assert_allclose(online, whole, atol=1e-5)
  # Not trivially equal: without the carried membrane every step would repeat step 0.
  assert not np.allclose(whole[0], whole[-1], atol=1e-3)


def _one_train_step(config, x, y):
  validated = config_lib.validate(config)
  tx, schedule = optim.make_optimizer(config.optimizer, steps_per_epoch=10, total_steps=10)
  state = steps.init_state(validated.model, tx, jax.random.key(0), x, lipschitz=False)
  step = jax.jit(steps.make_train_step(validated.model, tx, config, schedule))
  return step(state, {"image": x, "label": y})


def test_without_a_temporal_path_sltt_takes_the_bptt_step():
  """LIF with tau=1 forgets its membrane (h = v_reset + x), so on a static input every time
  step is the same: BPTT's and SLTT's losses, BatchNorm statistics and gradients agree."""
  x = jax.random.normal(jax.random.key(2), (8, 8, 8, 1)) + 0.5
  y = jnp.arange(8) % 10
  overrides = {"model.tau": 1.0, "model.T": 3, "optimizer.name": "sgd"}
  bptt_state, bptt = _one_train_step(tiny_config(**overrides), x, y)
  sltt_state, sltt = _one_train_step(tiny_config(**overrides, gradient="sltt"), x, y)
  for key in ("loss", "ce_main", "accuracy", "head1_accuracy"):
    np.testing.assert_allclose(sltt[key], bptt[key], rtol=1e-5, err_msg=key)
  assert_trees_close(sltt_state.batch_stats, bptt_state.batch_stats, atol=1e-5)
  assert_trees_close(sltt_state.params, bptt_state.params, atol=1e-5)
  np.testing.assert_allclose(sltt["grad_norm"], bptt["grad_norm"], rtol=1e-4)


def _step_temp_bytes(gradient, T):
  config = tiny_config(**{"model.T": T, "sml.enabled": False, "model.width": 0.125},
                       gradient=gradient)
  validated = config_lib.validate(config)
  tx, schedule = optim.make_optimizer(config.optimizer, steps_per_epoch=10, total_steps=10)
  x = jnp.zeros((16, 16, 16, 1))
  state = jax.eval_shape(lambda: steps.init_state(validated.model, tx, jax.random.key(0), x,
                                                  lipschitz=False))
  batch = {"image": jax.ShapeDtypeStruct(x.shape, x.dtype),
           "label": jax.ShapeDtypeStruct((16,), jnp.int32)}
  step = jax.jit(steps.make_train_step(validated.model, tx, config, schedule))
  return step.lower(state, batch).compile().memory_analysis().temp_size_in_bytes


def test_sltt_step_memory_does_not_grow_with_T():
  sltt = {T: _step_temp_bytes("sltt", T) for T in (2, 8)}
  assert sltt[8] < 1.2 * sltt[2]
  assert sltt[8] < _step_temp_bytes("bptt", 8) / 2   # BPTT's activations grow with T


def test_sltt_refuses_per_step_batchnorm():
  config = tiny_config(gradient="sltt")
  config.model.options.bn_per_step = True
  with pytest.raises(ValueError, match="bn_per_step"):
    config_lib.validate(config)


def test_with_a_temporal_path_sltt_drops_it_and_frames_take_the_static_step():
  """With tau=2 the membranes carry over, and SLTT's gradient is not BPTT's. Frames
  [B, T, H, W, C] that repeat one image take the SLTT step the static image takes."""
  x = jax.random.normal(jax.random.key(2), (8, 8, 8, 1)) + 0.5
  y = jnp.arange(8) % 10
  frames = jnp.broadcast_to(x[:, None], (8, 3, 8, 8, 1))
  config = tiny_config(**{"model.T": 3}, gradient="sltt")
  _, bptt = _one_train_step(tiny_config(**{"model.T": 3}), x, y)
  static_state, static = _one_train_step(config, x, y)
  frames_state, framed = _one_train_step(config, frames, y)
  assert np.isfinite(static["loss"]) and static["state_finite"] == 1
  assert abs(float(static["grad_norm"]) / float(bptt["grad_norm"]) - 1) > 1e-3
  np.testing.assert_allclose(framed["loss"], static["loss"], rtol=1e-6)
  assert_trees_close(frames_state.params, static_state.params, atol=1e-6)
