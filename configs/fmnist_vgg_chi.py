"""Fashion-MNIST, narrow VGG-small, rectangle surrogate with chi-guided per-layer widths.

The small counterpart of configs/imagenet_sew34_chi.py: every neuron layer's
rectangle half-width starts at 0.5 (alpha=1) and is steered toward a 30%
support fraction by snnjax's rule (snnjax.chi.next_halfwidth), every
10 steps. The other settings are snnjax.train.recipes.fmnist_vgg (SML off):
    python train.py --config configs/fmnist_vgg_chi.py --workdir workdirs/fmnist_chi
"""

from snnjax import estimators
from snnjax.train import recipes


def get_config():
  c = recipes.fmnist_vgg()
  c.model.surrogate = "rectangle(alpha=1.0)"
  c.estimator.chi.update(dict(enabled=True, target=0.3, every_steps=10))
  return c
