"""ImageNet, spiking ResNet-34 (ImageNet stem), T=4, Surrogate Module Learning (paper: 68.25%).

Reads ImageNet from image folders, ~/data/imagenet/{train,val}/<wnid>/*.JPEG
(--config.data.folder=ROOT); --config.data.source=tfds --config.data.eval_split=validation
reads a tfds imagenet2012 build instead. See the README's Data section.
"""

from snnjax.train import recipes


def get_config():
  return recipes.sml_imagenet("resnet34", T=4)
