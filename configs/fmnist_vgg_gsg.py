"""Fashion-MNIST, narrow VGG-small in ISNM form, soft reset, gradual surrogate gradient (GSG).

"Gradual Surrogate Gradient Learning in Deep Spiking Neural Networks" (Chen et
al., ICASSP 2022): the gsg_tanh surrogate with beta annealed log-linearly from
beta_min to beta_max (snnjax's defaults 0.5 -> 5, see snnjax.estimators), ISNM,
soft reset. The other settings are snnjax.train.recipes.fmnist_vgg (SML off).
The run is one epoch, so beta anneals per step (snnjax's choice; the paper
anneals per epoch):
    python train.py --config configs/fmnist_vgg_gsg.py --workdir workdirs/fmnist_gsg
"""

import ml_collections

from snnjax import estimators
from snnjax.train import recipes


def get_config():
  c = recipes.fmnist_vgg()
  c.model.options = ml_collections.ConfigDict(dict(form="isnm"))
  c.model.reset = "soft"
  c.model.surrogate = f"gsg_tanh(beta={estimators.GSG_BETA_MIN})"
  c.estimator.schedule.update(dict(param="beta", kind="gsg", start=estimators.GSG_BETA_MIN,
                                   end=estimators.GSG_BETA_MAX, unit="step"))
  return c
