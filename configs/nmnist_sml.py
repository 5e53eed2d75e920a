"""N-MNIST (10 classes), a half-width VGG-small SNN (ISNM form), T=10 frames at the 34x34
sensor size, Surrogate Module Learning.

Neither the SML paper nor the SGS paper reports N-MNIST, so only the method is theirs:
the recipe snnjax.train.recipes.sml_dvs (the SML paper's DVS setting: lambda=1/3,
alpha=1, T_dis=3; AdamW lr 0.01 with weight decay 0.02 on every parameter, cosine per
epoch, as its released code trains CIFAR10-DVS). snnjax's choices for this dataset: a
small model instead of ResNet-18 (vgg_small at width 0.5, 64-64-M-128-128-M-256-256-256-M
halved, heads after conv layers 2 and 4 with k=128), T=10 frames split by event count,
frames kept at 34x34, no flip and no roll (digits are not mirror-symmetric and fill the
sensor), batch 64, 50 epochs.

The data: packed event splits with the dataset's Train/Test split, which one
command writes from the original files (NMNIST/: Train/ and Test/ folders of .bin):
    python -m snnjax.data.prepare nmnist --raw NMNIST/ --out ~/data/nmnist_events
    python train.py --config configs/nmnist_sml.py --workdir W
(--config.data.folder=OUT for another place; the folder holds the packed train/ and
test/ splits of snnjax.data.events, 10 classes).
"""

import ml_collections

from snnjax.train import recipes

FOLDER = "~/data/nmnist_events"


def get_config():
  c = recipes.sml_dvs(T=10)
  c.model.name = "vgg_small"
  c.model.width = 0.5
  c.model.options = ml_collections.ConfigDict()   # sml_dvs's ResNet stem option
  c.sml.update(dict(heads=(2, 4), head_channels=128))
  c.data.name = "nmnist"
  c.data.folder = FOLDER  # the event source expands ~
  c.data.num_classes = 10
  c.data.image_size = 0
  c.data.events.update(dict(num_frames=10, split_by="number", sensor_size=(34, 34)))
  c.data.augment.update(dict(crop_padding=0, flip=False, roll=0))
  c.batch_size = 64
  c.num_epochs = 50.0
  return c
