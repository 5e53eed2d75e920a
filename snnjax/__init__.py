"""snnjax: directly trained deep spiking neural networks in JAX/Flax.

    import snnjax as sj
    sg = sj.surrogates.atan(alpha=2.0)
    spikes, v = sj.neurons.lif(x_seq, tau=2.0, surrogate=sg)
"""

from snnjax import layers, neurons, surrogates

__all__ = ["layers", "neurons", "surrogates"]
__version__ = "0.1.0"
