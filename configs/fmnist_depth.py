"""The depth experiment of Surrogate Module Learning (its Fig. 2) on Fashion-MNIST.

Stem 3C64s1-3C64s2-3C128s2, then L x 3C128s1, adaptive avg-pool 2, FC; T=4.
    python train.py --config configs/fmnist_depth.py --workdir W --config.model.options.depth=8
    ... --config.sml.enabled=False        plain SNN (no surrogate module)
    ... --config.model.options.ann=True   the ANN baseline (ReLU), same budget
"""

import ml_collections

from snnjax.train.config import base_config


def get_config():
  c = base_config()
  c.model.name = "depth_net"
  c.model.T = 4
  c.model.width = 0.25
  c.model.options = ml_collections.ConfigDict(dict(depth=4, ann=False))
  c.model.surrogate = "atan(alpha=2.0)"
  # One head after the stem's last block (index 3), as SML attaches after early blocks.
  c.sml.enabled = True
  c.sml.heads = (3,)
  c.sml.head_channels = 64
  c.data.augment.crop_padding = 2
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 0.02
  c.batch_size = 64
  c.num_epochs = 2.0
  return c
