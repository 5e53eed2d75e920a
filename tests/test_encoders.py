"""Input encoders: rate and latency codes, their config, and training with them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import encoders
from snnjax.data import config as data_config
from snnjax.train import steps


def test_rate_code_fires_with_the_intensity_and_is_reproducible():
  p = jnp.asarray([[0.0, 0.25], [0.5, 1.0]])
  key = jax.random.key(3)
  spikes = encoders.rate(p, 2000, key)
  assert spikes.shape == (2000, 2, 2) and set(np.unique(spikes)) <= {0.0, 1.0}
  np.testing.assert_allclose(spikes.mean(0), p, atol=0.03)
  np.testing.assert_array_equal(spikes, encoders.rate(p, 2000, key))       # same key, same code
  assert not np.array_equal(spikes, encoders.rate(p, 2000, jax.random.key(4)))
  np.testing.assert_allclose(encoders.rate(p, 2000, key, gain=2.0).mean(0),
                             np.minimum(1, 2 * np.asarray(p)), atol=0.03)


def test_latency_code_is_one_spike_brightest_first():
  p = jnp.asarray([1.0, 0.5, 0.02, 0.005])
  spikes = np.asarray(encoders.latency(p, 5, threshold=0.01))
  assert spikes.shape == (5, 4)
  assert spikes.sum(0).tolist() == [1, 1, 1, 0]                             # below threshold: none
  assert np.argmax(spikes, 0)[:3].tolist() == [0, 2, 4]                     # round((1 - p)(T - 1))


def test_encoders_need_at_least_one_step():
  with pytest.raises(ValueError, match="T >= 1"):
    encoders.rate(jnp.ones(3), 0, jax.random.key(0))
  with pytest.raises(ValueError, match="T >= 1"):
    encoders.latency(jnp.ones(3), 0)


@pytest.mark.parametrize("override, message", [
    ({"kind": "poisson"}, "encoding.kind='poisson' unknown; allowed: direct, rate, latency"),
    ({"kind": "rate", "gain": 0.0}, "encoding.gain=0.0 must be > 0"),
    ({"kind": "latency", "threshold": 1.0}, r"threshold=1.0 must be in \[0, 1\)"),
])
def test_bad_encodings_are_named(override, message):
  block = data_config.default_config()
  block.encoding.update(override)
  with pytest.raises(ValueError, match=message):
    data_config.validate_config(block)


def test_event_data_take_no_spike_encoder():
  block = data_config.default_config()
  block.source, block.encoding.kind = "events", "rate"
  with pytest.raises(ValueError, match="event data are spikes already"):
    data_config.validate_config(block)


def test_the_train_step_draws_a_new_rate_code_each_step_and_evaluation_a_fixed_one(tmp_path):
  from test_train import tiny_config
  from snnjax.train import loop
  config = tiny_config(**{"data.encoding.kind": "rate", "max_steps": 2, "sml.enabled": False})
  experiment = loop.prepare(config, tmp_path / "run")
  try:
    batch = next(experiment.train_data)
    assert 0.0 <= float(np.min(batch["image"])) and float(np.max(batch["image"])) <= 1.0
    model, encoding = experiment.model, config.data.encoding
    keys = [jax.random.fold_in(jax.random.key(0), s) for s in (1, 2)]
    codes = [steps.encoded_input(batch["image"], model, encoding, k) for k in keys]
    assert codes[0].shape == (config.model.T, *batch["image"].shape)
    assert not np.array_equal(codes[0], codes[1])
    np.testing.assert_array_equal(steps.encoded_input(batch["image"], model, encoding),
                                  steps.encoded_input(batch["image"], model, encoding))
  finally:
    experiment.checkpointer.close()
  results = loop.train_and_evaluate(config, tmp_path / "run")
  assert results["step"] == 2 and 0 <= results["test_accuracy"] <= 1
