"""CIFAR-100, spiking ResNet-19, T=4, Surrogate Module Learning (paper: 79.18%).

Reads the official cifar-100-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) from
config.data.folder, default ~/data/cifar-100-python.tar.gz (or the extracted folder); no
TensorFlow needed. --config.data.source=tfds reads a tfds-prepared cifar100 instead.
"""

from snnjax.train import recipes


def get_config():
  return recipes.sml_cifar("cifar100", "resnet19", T=4)
