"""ImageNet, SEW-ResNet-34 (ADD), T=4, plain surrogate training (the chi paper's 67.04% baseline).

Recipe: snnjax.train.recipes.sew_imagenet (IF neurons, ATan, SGD 0.1, 320 epochs).
"""

from snnjax.train import recipes


def get_config():
  return recipes.sew_imagenet(T=4)
