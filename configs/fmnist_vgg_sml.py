"""The default: Fashion-MNIST (Debian's IDX files), a narrow VGG-small SNN, T=4, an SML head.

Sized to train to >= 85% test accuracy in minutes on a 2-core CPU:
    python train.py --config configs/fmnist_vgg_sml.py --workdir workdirs/fmnist
"""

from snnjax.train import recipes


def get_config():
  c = recipes.fmnist_vgg()
  c.sml.update(dict(enabled=True, heads=(2,), head_channels=32))
  return c
