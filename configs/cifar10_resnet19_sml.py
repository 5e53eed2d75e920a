"""CIFAR-10, spiking ResNet-19, T=4, Surrogate Module Learning (paper: 95.54%).

Needs CIFAR-10 prepared for tfds (ArrayRecord) in config.data.data_dir.
"""

from snnjax.train import recipes


def get_config():
  return recipes.sml_cifar("cifar10", "resnet19", T=4)
