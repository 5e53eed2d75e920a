"""Fashion-MNIST, narrow VGG-small, rectangle surrogate with chi-guided per-layer widths.

The small counterpart of configs/imagenet_sew34_chi.py: every neuron layer's
rectangle half-width starts at 0.5 (alpha=1) and is steered toward a 30%
support fraction by snnjax's rule (snnjax.estimators.next_halfwidth), every
10 steps. The other settings are those of configs/fmnist_vgg_sml.py, with SML off:
    python train.py --config configs/fmnist_vgg_chi.py --workdir workdirs/fmnist_chi
"""

from snnjax import estimators
from snnjax.train.config import base_config


def get_config():
  c = base_config()
  c.model.name = "vgg_small"
  c.model.T = 4
  c.model.width = 0.125
  c.model.surrogate = "rectangle(alpha=1.0)"
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
  c.estimator.chi.update(dict(enabled=True, target=0.3, every_steps=10))
  return c
