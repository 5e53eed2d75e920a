"""The default: Fashion-MNIST (Debian's IDX files), a narrow VGG-small SNN, T=4, SML heads.

Sized to train to >= 85% test accuracy in minutes on a 2-core CPU:
    python train.py --config configs/fmnist_vgg_sml.py --workdir workdirs/fmnist
"""

from snnjax.train.config import base_config


def get_config():
  c = base_config()
  c.model.name = "vgg_small"
  c.model.T = 4
  c.model.width = 0.125
  c.sml.enabled = True
  c.sml.heads = (2,)
  c.sml.head_channels = 32
  c.model.surrogate = "atan(alpha=2.0)"
  c.data.augment.crop_padding = 0
  c.data.augment.flip = True
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 8e-3
  c.optimizer.weight_decay = 0.02
  c.optimizer.warmup_epochs = 0.05
  c.batch_size = 64
  c.num_epochs = 1.0
  c.log_every_steps = 50
  return c
