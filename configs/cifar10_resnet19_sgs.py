"""CIFAR-10, spiking ResNet-19, T=2, surrogate gradient scaling (SGS) as its released code.

"Surrogate gradient scaling for directly training spiking neural networks" (Chen et al.,
Applied Intelligence 2023). Recipe: snnjax.train.recipes.sgs_cifar (threshold 0.5, SGS
around a box of half-width 0.5, PyTorch's default init, the code's CIFAR normalisation).
delta defaults to the released constant 1e-4; sweep it with the config argument:
    python train.py --config configs/cifar10_resnet19_sgs.py:0.5 --workdir W
snnjax's own SGS default is threshold 1.0 with sgs(base=rectangle, delta=0.5): at that
threshold v - o >= 0 inside the box, so SGS loses its two-sided behaviour
(docs/REFERENCE.md).
"""

from snnjax.train import recipes


def get_config(delta: str | None = None):
  """``delta``: the SGS strength as text (the part after ':' of --config), default 1e-4."""
  return recipes.sgs_cifar("cifar10", T=2,
                           delta=recipes.SGS_CODE_DELTA if delta is None else float(delta))
