"""ImageNet, SEW-ResNet-34 (ADD), T=4, plain surrogate training (the chi paper's 67.04% baseline).

"Deep Residual Learning in Spiking Neural Networks" (Fang et al., NeurIPS 2021):
IF neurons, ATan surrogate, SGD lr 0.1 momentum 0.9, cosine, batch 256; 320 epochs.
"""

from snnjax.train import recipes


def get_config():
  c = recipes.sml_imagenet("sew_resnet34", T=4)
  c.sml.enabled = False
  c.model.neuron = "if"
  c.model.surrogate = "atan(alpha=2.0)"
  c.optimizer.update(dict(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.0))
  c.num_epochs = 320.0
  return c
