"""CIFAR-10, spiking ResNet-19, T=4, Surrogate Module Learning (paper: 95.54%).

Reads the official cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) from
config.data.folder, default ~/data/cifar-10-python.tar.gz (or the extracted folder); no
TensorFlow needed. --config.data.source=tfds reads a tfds-prepared cifar10 instead.
"""

from snnjax.train import recipes


def get_config():
  return recipes.sml_cifar("cifar10", "resnet19", T=4)
