"""Published training recipes, applied to a config by the files in configs/.

One home for each paper's settings, so the configs that share a recipe do not
repeat it. Epoch counts the papers leave unstated are snnjax's choice and say so.
"""

from __future__ import annotations

import ml_collections

from snnjax.train.config import base_config

#: The neuron of Surrogate Module Learning: u(t+1) = 0.5 u(t) + I(t), hard reset to 0.
SML_NEURON = dict(neuron="lif", tau=2.0, decay_input=False, v_reset=0.0, reset="hard")


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

  Heads after blocks 3 and 6; lambda=0.9, alpha=0.5, T_dis=3; AdamW lr 0.01,
  weight decay 0.02, cosine to 0, batch 256, random crop (pad 4) + flip; dspike
  surrogate (b=2.5, r=1). 300 epochs is snnjax's choice (the paper's schedule
  length is not in METHODS.md). Reported: CIFAR-10 ResNet-19 T=4 95.54%,
  CIFAR-100 ResNet-19 79.18%, CIFAR-10 ResNet-18 95.01%.
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
  c.data.source = "tfds"
  c.data.name = dataset
  c.data.augment.update(dict(crop_padding=4, flip=True))
  c.optimizer.update(dict(name="adamw", learning_rate=0.01, weight_decay=0.02,
                          schedule="cosine", warmup_epochs=0.0))
  c.batch_size = 256
  c.num_epochs = 300.0
  c.log_every_steps = 100
  return c


def sml_imagenet(model: str = "resnet34", T: int = 4) -> ml_collections.ConfigDict:
  """Surrogate Module Learning on ImageNet: heads after blocks 3, 7 and 13 of ResNet-34.

  lambda=1/3, alpha=1, T_dis=3; AdamW lr 4e-3, weight decay 0.02, cosine, batch
  256; RandomResizedCrop 224 + flip. 100 epochs is snnjax's choice. Reported:
  ResNet-34 T=4 68.25% (T=6 69.35%).
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
  c.model.neuron = "if"
  c.model.surrogate = "atan(alpha=2.0)"
  c.optimizer.update(dict(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.0))
  c.num_epochs = 320.0
  return c
