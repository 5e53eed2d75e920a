"""CIFAR-100, spiking ResNet-19, T=4, Surrogate Module Learning (paper: 79.18%)."""

from snnjax.train import recipes


def get_config():
  return recipes.sml_cifar("cifar100", "resnet19", T=4)
