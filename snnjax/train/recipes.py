"""Published training recipes, applied to a config by the files in configs/.

One home for each paper's settings, so the configs that share a recipe do not
repeat it. Where a paper released code, its recipe reproduces what that code
states (docs/REFERENCE.md lists every setting beside snnjax's default and the
config key that switches it); values neither the paper nor the code states are
snnjax's choice and say so.
"""

from __future__ import annotations

import ml_collections

from snnjax.data import cifar, image_folder
from snnjax.train.config import base_config

#: The neuron of Surrogate Module Learning: u(t+1) = 0.5 u(t) + I(t), hard reset to 0.
SML_NEURON = dict(neuron="lif", tau=2.0, decay_input=False, v_reset=0.0, reset="hard")

#: What the released code of Surrogate Module Learning (brain-intelligence-lab/
#: surrogate_module_learning) does besides the paper's hyperparameters: torch.optim.AdamW over
#: model.parameters() (decay on every parameter), CosineAnnealingLR stepped once per epoch,
#: nn.Linear layers left at PyTorch's default init (convs Kaiming-normal fan_out, snnjax's
#: default too), and the CIFAR normalisation constants of its data loaders.
SML_CODE = {"optimizer.decay_all": True, "optimizer.schedule_unit": "epoch",
            "model.dense_init": "torch", "data.normalization": "released_code"}

#: The released surrogate-gradient-scaling code (CHNtao/SGS-SNN, layers.py): threshold 0.5,
#: box half-width ``lens`` 0.5 (h = 1[|v - 0.5| < 0.5], i.e. rectangle(alpha=1)), and
#: delta = 1e-4, a constant the paper's ablations sweep (1e-4 is practically inert).
SGS_V_THRESHOLD = 0.5
SGS_CODE_DELTA = 1e-4


def _node(c: ml_collections.ConfigDict, key: str) -> tuple[ml_collections.ConfigDict, str]:
  *path, last = key.split(".")
  for part in path:
    c = c[part]
  return c, last


def _get(c: ml_collections.ConfigDict, key: str):
  node, last = _node(c, key)
  return node[last]


def _set(c: ml_collections.ConfigDict, values: dict) -> None:
  """Sets dotted keys, e.g. {"optimizer.decay_all": True}."""
  for key, value in values.items():
    node, last = _node(c, key)
    node[last] = value


#: Where ``python -m snnjax.data.prepare cifar10dvs --out`` is expected to write (README).
CIFAR10DVS_FOLDER = "~/data/cifar10dvs_events"


def dataset_files(c: ml_collections.ConfigDict, dataset: str) -> ml_collections.ConfigDict:
  """Points ``c.data`` at ``dataset``'s files as they are distributed (in place).

  CIFAR-10/100 ("cifar10", "cifar100") are read by the "cifar_python" source from
  :data:`snnjax.data.cifar.DEFAULT_PATHS` (~/data/cifar-10-python.tar.gz,
  ~/data/cifar-100-python.tar.gz; override with ``--config.data.folder``, which may
  also be the extracted folder); ImageNet ("imagenet2012") by the "image_folder"
  source from ~/data/imagenet/{train,val}/<wnid>/*.JPEG. ``--config.data.source=tfds``
  reads the tfds dataset of the same name instead; any other dataset goes to tfds.
  """
  c.data.name = dataset
  if dataset in cifar.DEFAULT_PATHS:
    c.data.source = "cifar_python"
    c.data.folder = cifar.DEFAULT_PATHS[dataset]
  elif dataset == "imagenet2012":
    c.data.source = "image_folder"
    c.data.folder = image_folder.DEFAULT_IMAGENET_FOLDER
    c.data.eval_split = "val"
  else:
    c.data.source = "tfds"
  return c


def snnjax_settings(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``c`` with the keys of :data:`SML_CODE` back at snnjax's defaults (in place).

  Weight decay on kernels only, cosine per step, Flax's LeCun init for Dense
  layers, the dataset's own normalisation statistics.
  """
  defaults = base_config()
  _set(c, {key: _get(defaults, key) for key in SML_CODE})
  return c


def fmnist_vgg() -> ml_collections.ConfigDict:
  """Fashion-MNIST (Debian's IDX files) on a narrow VGG-small SNN, T=4: one epoch on a CPU.

  Width 1/8 (channels 8-8-16-16-32-32-32), atan(alpha=2), flip, AdamW lr 8e-3
  with weight decay 0.02, 0.05 epoch warmup then cosine, batch 64. The
  Fashion-MNIST configs share these settings and add their method.
  """
  c = base_config()
  c.model.name = "vgg_small"
  c.model.T = 4
  c.model.width = 0.125
  c.model.surrogate = "atan(alpha=2.0)"
  c.data.augment.crop_padding = 0
  c.data.augment.flip = True
  c.optimizer.update(dict(name="adamw", learning_rate=8e-3, weight_decay=0.02,
                          warmup_epochs=0.05))
  c.batch_size = 64
  c.num_epochs = 1.0
  c.log_every_steps = 50
  return c


def sml_cifar(dataset: str, model: str, T: int = 4) -> ml_collections.ConfigDict:
  """Surrogate Module Learning on CIFAR ("Surrogate Module Learning", Deng et al., ICML 2023).

  Heads after blocks 3 and 6 (k=256, FC512 with bias); lambda=0.9, alpha=0.5,
  T_dis=3; AdamW lr 0.01, weight decay 0.02 on every parameter, cosine to 0
  stepped per epoch over 300 epochs (the README's --cos_lr_T 300 --epochs 300),
  batch 256 (2 x 128 in the README), random crop (pad 4) + flip, the code's
  normalisation constants (CIFAR-10 std 0.2023/0.1994/0.2010); dspike surrogate
  (b=2.5, r=1); PyTorch's default init for the Linear layers (:data:`SML_CODE`).
  Data from the official python-version tarball (:func:`dataset_files`).
  snnjax's own defaults are one key away each (docs/REFERENCE.md). Reported:
  CIFAR-10 ResNet-19 T=4 95.54%, CIFAR-100 ResNet-19 79.18%, CIFAR-10 ResNet-18
  95.01%.
  """
  c = base_config()
  c.model.name = model
  c.model.T = T
  c.model.update(SML_NEURON)
  c.model.surrogate = "dspike(b=2.5, r=1.0)"
  if model in ("resnet18", "resnet34"):
    c.model.options = ml_collections.ConfigDict(dict(stem="cifar"))
  c.sml.update(dict(enabled=True, heads=(3, 6), head_channels=256, alpha=0.5, lam=0.9,
                    temperature=3.0))
  dataset_files(c, dataset)
  c.data.augment.update(dict(crop_padding=4, flip=True))
  c.optimizer.update(dict(name="adamw", learning_rate=0.01, weight_decay=0.02,
                          schedule="cosine", warmup_epochs=0.0))
  _set(c, SML_CODE)
  c.batch_size = 256
  c.num_epochs = 300.0
  c.log_every_steps = 100
  return c


def sml_dvs(T: int = 10) -> ml_collections.ConfigDict:
  """Surrogate Module Learning on CIFAR10-DVS: the setting of the paper's 83.19%.

  As the released code trains it: ResNet-18 (CIFAR stem: conv3x3 s1 on the 2
  polarity channels, no max-pool), heads after blocks 3 and 6 (k=256), frames
  resized to 48x48, random flip and a random circular roll of up to +-5 pixels
  on both axes, no normalisation; AdamW lr 0.01, weight decay 0.02, the rest of
  :data:`SML_CODE`. lambda=1/3, alpha=1, T_dis=3 are the paper's DVS setting
  (the defaults of the code's SBDistillationLoss). T=10 frames split by event
  count, 90% of each class for training. Batch 128 and 100 epochs are the
  training script's argument defaults (its README gives no DVS command), so
  they are snnjax's choice here.
  """
  c = sml_cifar("cifar10", "resnet18", T=T)
  c.sml.update(dict(heads=(3, 6), alpha=1.0, lam=1 / 3, head_channels=256))
  c.data.source = "events"
  c.data.name = "cifar10"
  c.data.folder = CIFAR10DVS_FOLDER
  c.data.image_size = 48
  c.data.events.update(dict(num_frames=T, split_by="number", sensor_size=(128, 128),
                            train_fraction=0.9))
  c.data.augment.update(dict(crop_padding=0, flip=True, roll=5))
  c.batch_size = 128
  c.num_epochs = 100.0
  return c


def sgs_cifar(dataset: str = "cifar10", T: int = 2,
              delta: float = SGS_CODE_DELTA) -> ml_collections.ConfigDict:
  """Surrogate gradient scaling on CIFAR with ResNet-19 ("Surrogate gradient scaling
  for directly training spiking neural networks", Chen et al., Applied Intelligence 2023).

  From the released code (CHNtao/SGS-SNN): LIF mem = 0.5 mem + x, threshold 0.5,
  hard reset with the gradient through it; the SGS-wrapped box of half-width
  0.5 (rectangle(alpha=1)); ``delta`` the scaling strength (the code's constant
  1e-4 by default; sweep it, e.g. 0.5); ResNet-19 with PyTorch's default init
  for convs and Linear layers (the code never re-initialises them); CIFAR
  normalisation (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010); T=2,
  batch 100, lr 1e-3, 150 epochs (the released test script's argument
  defaults). The training script is not released: Adam without weight decay,
  cosine per epoch, random crop (pad 4) + flip are snnjax's choice. Lipschitz
  regularisation is off (loss.lipschitz_weight). Data as :func:`dataset_files`.
  """
  c = base_config()
  c.model.name = "resnet19"
  c.model.T = T
  c.model.update(SML_NEURON)
  c.model.v_threshold = SGS_V_THRESHOLD
  c.model.surrogate = f"sgs(base=rectangle, alpha=1.0, delta={delta!r})"
  c.model.update(dict(conv_init="torch", dense_init="torch"))
  c.sml.enabled = False
  dataset_files(c, dataset)
  c.data.normalization = "released_code"
  c.data.augment.update(dict(crop_padding=4, flip=True))
  c.optimizer.update(dict(name="adam", learning_rate=1e-3, weight_decay=0.0, schedule="cosine",
                          schedule_unit="epoch", warmup_epochs=0.0))
  c.batch_size = 100
  c.num_epochs = 150.0
  c.log_every_steps = 100
  return c


def sml_imagenet(model: str = "resnet34", T: int = 4) -> ml_collections.ConfigDict:
  """Surrogate Module Learning on ImageNet: heads after blocks 3, 7 and 13 of ResNet-34.

  lambda=1/3, alpha=1, T_dis=3; AdamW lr 4e-3, weight decay 0.02 on every
  parameter, cosine per epoch, batch 256; RandomResizedCrop 224 + flip, the
  usual ImageNet mean/std (:data:`SML_CODE`). 100 epochs is snnjax's choice.
  Reported: ResNet-34 T=4 68.25% (T=6 69.35%).
  """
  c = sml_cifar("imagenet2012", model, T)
  c.model.options = ml_collections.ConfigDict(dict(stem="imagenet"))
  c.sml.update(dict(heads=(3, 7, 13), alpha=1.0, lam=1 / 3))
  c.data.image_size = 224
  c.data.augment.update(dict(crop_padding=0, random_resized_crop=True))
  c.data.read_threads = 16
  c.data.worker_count = 8
  c.optimizer.learning_rate = 4e-3
  c.num_epochs = 100.0
  c.eval_every_epochs = 5.0
  c.log_every_steps = 500
  return c


def sew_imagenet(T: int = 4) -> ml_collections.ConfigDict:
  """SEW-ResNet-34 (ADD) on ImageNet, plain surrogate training.

  "Deep Residual Learning in Spiking Neural Networks" (Fang et al., NeurIPS
  2021): IF neurons, ATan surrogate, SGD lr 0.1 momentum 0.9, cosine, batch
  256, 320 epochs; the data pipeline of :func:`sml_imagenet`. The chi paper's
  baseline: 67.04%.
  """
  c = sml_imagenet("sew_resnet34", T)
  c.sml.enabled = False
  snnjax_settings(c)  # not the SML code's settings: snnjax's defaults, as this recipe always had
  c.model.neuron = "if"
  c.model.surrogate = "atan(alpha=2.0)"
  c.optimizer.update(dict(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.0))
  c.num_epochs = 320.0
  return c
