"""CIFAR10-DVS, VGGSNN, T=10 frames at 48x48, SML heads: snnjax's own DVS option.

Not the SML paper's setting (that is configs/cifar10dvs_resnet18_sml.py: ResNet-18,
heads (3, 6) with k=256, flip + roll, lr 0.01): this one is a lighter VGGSNN
(64-128-256-256-512-512-512-512) with heads after conv layers 2 and 4 (k=128), lr
1e-3, crop-pad 4 + flip, snnjax's optimiser defaults (weight decay on kernels,
cosine per step, LeCun init of the classifier). SML DVS loss setting: lambda=1/3,
alpha=1, T_dis=3. Events as `python -m snnjax.data.prepare cifar10dvs --raw RAW --out
~/data/cifar10dvs_events` writes them (config.data.folder; SpikingJelly's events_np
folders work too).
"""

from snnjax.train import recipes


def get_config():
  c = recipes.snnjax_settings(recipes.sml_cifar("cifar10", "vggsnn", T=10))
  c.sml.update(dict(heads=(2, 4), alpha=1.0, lam=1 / 3, head_channels=128))
  c.data.source = "events"
  c.data.name = "cifar10"
  c.data.folder = recipes.CIFAR10DVS_FOLDER
  c.data.image_size = 48
  c.data.events.update(dict(num_frames=10, split_by="number", sensor_size=(128, 128)))
  c.data.augment.update(dict(crop_padding=4, flip=True))
  c.optimizer.update(dict(learning_rate=1e-3, weight_decay=0.02))
  c.batch_size = 64
  c.num_epochs = 200.0
  return c
