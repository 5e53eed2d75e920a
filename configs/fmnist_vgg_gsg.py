"""Fashion-MNIST, narrow VGG-small in ISNM form, soft reset, gradual surrogate gradient (GSG).

"Gradual Surrogate Gradient Learning in Deep Spiking Neural Networks" (Chen et
al., ICASSP 2022): the gsg_tanh surrogate with beta annealed log-linearly from
beta_min to beta_max (snnjax's defaults 0.5 -> 5, see snnjax.estimators), ISNM,
soft reset. The other settings are those of configs/fmnist_vgg_sml.py, with SML
off. The run is one epoch, so beta anneals per step (snnjax's choice; the
paper anneals per epoch):
    python train.py --config configs/fmnist_vgg_gsg.py --workdir workdirs/fmnist_gsg
"""

import ml_collections

from snnjax import estimators
from snnjax.train.config import base_config


def get_config():
  c = base_config()
  c.model.name = "vgg_small"
  c.model.options = ml_collections.ConfigDict(dict(form="isnm"))
  c.model.T = 4
  c.model.width = 0.125
  c.model.reset = "soft"
  c.model.surrogate = f"gsg_tanh(beta={estimators.GSG_BETA_MIN})"
  c.sml.enabled = False
  c.data.augment.crop_padding = 0
  c.data.augment.flip = True
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 0.02
  c.optimizer.warmup_epochs = 0.05
  c.batch_size = 64
  c.num_epochs = 1.0
  c.log_every_steps = 50
  if "estimator" not in c:
    c.estimator = estimators.default_config()
  c.estimator.schedule.update(dict(param="beta", kind="gsg", start=estimators.GSG_BETA_MIN,
                                   end=estimators.GSG_BETA_MAX, unit="step"))
  return c
