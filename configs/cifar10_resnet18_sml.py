"""CIFAR-10, spiking ResNet-18 (CIFAR stem), T=4, Surrogate Module Learning (paper: 95.01%)."""

from snnjax.train import recipes


def get_config():
  return recipes.sml_cifar("cifar10", "resnet18", T=4)
