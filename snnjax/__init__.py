"""snnjax: directly trained deep spiking neural networks in JAX/Flax.

    import snnjax as sj
    sg = sj.surrogates.atan(alpha=2.0)
    spikes, v = sj.neurons.lif(x_seq, tau=2.0, surrogate=sg)
    model = sj.models.create("resnet19", num_classes=10, T=4, sml_heads=(3, 6))
    loss = sj.losses.sml_loss(out.logits, out.aux_logits, labels)

The submodules load on first use (PEP 562), so that ``import snnjax.xla_flags`` or
``snnjax.host_memory`` does not import JAX: both must run before JAX starts.
"""

import importlib

__all__ = ["energy", "layers", "losses", "models", "neurons", "surrogates"]
__version__ = "0.1.0"


def __getattr__(name: str):
  if name in __all__:
    return importlib.import_module(f"snnjax.{name}")
  raise AttributeError(f"module 'snnjax' has no attribute {name!r}")
