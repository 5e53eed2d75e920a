"""ImageNet, spiking ResNet-34 (ImageNet stem), T=4, Surrogate Module Learning (paper: 68.25%).

Needs imagenet2012 prepared for tfds: put ILSVRC2012_img_{train,val}.tar in
<data_dir>/downloads/manual/ and build it in ArrayRecord format.
"""

from snnjax.train import recipes


def get_config():
  return recipes.sml_imagenet("resnet34", T=4)
