"""CIFAR-10, VGG-small (ISNM), T=5, soft reset, gradual surrogate gradient: the GSG paper's recipe.

"Gradual Surrogate Gradient Learning in Deep Spiking Neural Networks" (Chen et
al., ICASSP 2022): Adam lr 1e-3 with weight decay 1e-4, 200 epochs, random crop
+ flip, beta of the gsg_tanh surrogate annealed log-linearly per epoch. Its
ablation (T=5): ISNM 84.63%, +soft reset 85.4%, +GSG 90.32%, +GSG+soft reset 91.7%.
snnjax's choices where the paper is silent: beta 0.5 -> 5 (snnjax.estimators),
LIF tau=2 without input decay, cosine learning-rate decay, batch 128.
"""

import ml_collections

from snnjax import estimators
from snnjax.train import recipes
from snnjax.train.config import base_config


def get_config():
  c = base_config()
  c.model.name = "vgg_small"
  c.model.options = ml_collections.ConfigDict(dict(form="isnm"))
  c.model.T = 5
  c.model.neuron = "lif"
  c.model.reset = "soft"
  c.model.surrogate = f"gsg_tanh(beta={estimators.GSG_BETA_MIN})"
  c.sml.enabled = False
  recipes.dataset_files(c, "cifar10")
  c.data.augment.update(dict(crop_padding=4, flip=True))
  c.optimizer.update(dict(name="adam", learning_rate=1e-3, weight_decay=1e-4,
                          schedule="cosine", warmup_epochs=0.0))
  c.batch_size = 128
  c.num_epochs = 200.0
  c.log_every_steps = 100
  c.estimator.schedule.update(dict(param="beta", kind="gsg", start=estimators.GSG_BETA_MIN,
                                   end=estimators.GSG_BETA_MAX, unit="epoch"))
  return c
