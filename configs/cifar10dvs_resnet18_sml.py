"""CIFAR10-DVS, spiking ResNet-18 (2-channel conv3x3 stem), T=10 frames at 48x48, Surrogate
Module Learning: the setting of the SML paper's 83.19%, as its released code trains it.

Recipe: snnjax.train.recipes.sml_dvs (heads after blocks 3 and 6, k=256; lambda=1/3,
alpha=1, T_dis=3; resize 48, flip, random roll of +-5 pixels; AdamW lr 0.01, weight
decay 0.02 on every parameter, cosine per epoch). docs/REFERENCE.md lists each setting
beside snnjax's default. Events in config.data.folder (default ~/data/cifar10dvs_events)
as the prepare command writes them from the original .aedat files:
    python -m snnjax.data.prepare cifar10dvs --raw ~/data/CIFAR10DVS --out ~/data/cifar10dvs_events
    python train.py --config configs/cifar10dvs_resnet18_sml.py --workdir W
configs/cifar10dvs_vggsnn.py is snnjax's own, smaller DVS option.
"""

from snnjax.train import recipes


def get_config():
  return recipes.sml_dvs(T=10)
