"""The papers' recipes as their released code runs them, and the config keys that switch
each setting back to snnjax's default (docs/REFERENCE.md)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from snnjax.train import config as config_lib
from snnjax.train import optim, recipes


def _optimizer_config(**overrides):
  c = config_lib.base_config().optimizer
  c.update(overrides)
  return c


def test_cosine_per_epoch_is_torch_cosine_annealing_stepped_once_per_epoch():
  base, epochs, per_epoch = 0.01, 5, 7
  c = _optimizer_config(learning_rate=base, schedule="cosine", schedule_unit="epoch")
  schedule = optim.learning_rate_schedule(c, per_epoch, epochs * per_epoch)
  lrs = np.asarray([schedule(t) for t in range(epochs * per_epoch)]).reshape(epochs, per_epoch)
  # CosineAnnealingLR(T_max=E), eta_min=0: epoch e runs at base (1 + cos(pi e / E)) / 2.
  expected = base * (1 + np.cos(np.pi * np.arange(epochs) / epochs)) / 2
  np.testing.assert_allclose(lrs, np.repeat(expected[:, None], per_epoch, 1), rtol=1e-6)
  per_step = optim.learning_rate_schedule(_optimizer_config(learning_rate=base), per_epoch,
                                          epochs * per_epoch)
  assert float(per_step(1)) < float(per_step(0)) == pytest.approx(base)  # snnjax: every step
  assert float(per_step(3)) == pytest.approx(base * (1 + math.cos(math.pi * 3 / 35)) / 2)


def test_per_epoch_cosine_after_warmup_steps_at_epoch_boundaries():
  c = _optimizer_config(learning_rate=1.0, schedule_unit="epoch", warmup_epochs=1.0)
  schedule = optim.learning_rate_schedule(c, 4, 12)
  lrs = [float(schedule(t)) for t in range(12)]
  np.testing.assert_allclose(lrs[:4], [0, 0.25, 0.5, 0.75])
  assert lrs[4] == lrs[7] == pytest.approx(1.0) and lrs[8] == lrs[11] == pytest.approx(0.5)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_decay_all_reaches_biases_and_batchnorm_parameters(name):
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 2))}, "bn": {"scale": jnp.ones(2),
                                                                "bias": jnp.ones(2)}}
  zero_grads = jax.tree.map(jnp.zeros_like, params)

  def step(decay_all):
    c = _optimizer_config(name=name, learning_rate=0.1, weight_decay=0.5, decay_all=decay_all,
                          schedule="constant", momentum=0.0)
    tx, _ = optim.make_optimizer(c, 10, 10)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    return optax.apply_updates(params, updates)

  kernels_only, everything = step(False), step(True)
  assert float(kernels_only["conv"]["kernel"][0, 0, 0, 0]) < 1
  assert float(kernels_only["bn"]["bias"][0]) == 1.0 == float(kernels_only["bn"]["scale"][0])
  assert float(everything["bn"]["bias"][0]) < 1 and float(everything["bn"]["scale"][0]) < 1
  if name == "adamw":  # torch.optim.AdamW: p <- p (1 - lr wd) when the gradient is 0
    assert float(everything["bn"]["scale"][0]) == pytest.approx(1 - 0.1 * 0.5)


def test_sml_cifar_recipe_has_the_reference_code_settings():
  c = recipes.sml_cifar("cifar10", "resnet19")
  assert c.optimizer.decay_all and c.optimizer.schedule_unit == "epoch"
  assert c.model.dense_init == "torch" and c.model.conv_init == "kaiming_fan_out"
  assert c.data.normalization == "released_code" and c.sml.head_bias
  assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.weight_decay) == ("adamw", 0.01,
                                                                                     0.02)
  assert tuple(c.sml.heads) == (3, 6) and c.sml.head_channels == 256 and c.num_epochs == 300
  config_lib.validate(c)
  back = recipes.snnjax_settings(recipes.sml_cifar("cifar10", "resnet19"))
  base = config_lib.base_config()
  for key in recipes.SML_CODE:
    group, name = key.split(".")
    assert back[group][name] == base[group][name], key


def test_sml_dvs_recipe_is_resnet18_at_48_with_flip_and_roll():
  c = recipes.sml_dvs()
  assert c.model.name == "resnet18" and c.model.options.stem == "cifar" and c.model.T == 10
  assert c.data.source == "events" and c.data.image_size == 48
  assert (c.data.augment.flip, c.data.augment.roll, c.data.augment.crop_padding) == (True, 5, 0)
  assert tuple(c.sml.heads) == (3, 6) and c.sml.head_channels == 256
  assert (c.sml.lam, c.sml.alpha) == (pytest.approx(1 / 3), 1.0)
  config_lib.validate(c)


def test_sgs_recipe_uses_the_released_threshold_and_box():
  c = recipes.sgs_cifar()
  assert c.model.v_threshold == 0.5 and c.model.name == "resnet19" and c.model.T == 2
  assert c.model.surrogate == "sgs(base=rectangle, alpha=1.0, delta=0.0001)"
  assert c.model.conv_init == c.model.dense_init == "torch"
  assert c.data.normalization == "released_code" and not c.sml.enabled
  config_lib.validate(c)
  swept = recipes.sgs_cifar(delta=0.5)
  assert "delta=0.5" in swept.model.surrogate


def test_sgs_threshold_disagreeing_with_the_neuron_fails_config_validation():
  c = recipes.sgs_cifar()
  c.model.surrogate = "sgs(base=rectangle, delta=0.5, v_threshold=1.0)"
  with pytest.raises(ValueError, match=r"v_threshold=1 but its neuron's threshold is "
                                       r"v_threshold=0.5"):
    config_lib.validate(c)
  c.model.surrogate = "sgs(base=rectangle, delta=0.5, v_threshold=0.5)"
  config_lib.validate(c)


def test_runs_saved_before_head_bias_existed_resume_without_it(tmp_path):
  old = config_lib.base_config().to_dict()
  del old["sml"]["head_bias"]
  (tmp_path / "config.json").write_text(json.dumps(old, default=list))
  assert config_lib.load_saved_config(tmp_path).sml.head_bias is False
  new = config_lib.base_config()
  config_lib.save_config(tmp_path, new)
  assert config_lib.load_saved_config(tmp_path).sml.head_bias is True
