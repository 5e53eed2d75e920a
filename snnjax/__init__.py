"""snnjax: directly trained deep spiking neural networks in JAX/Flax.

    import snnjax as sj
    sg = sj.surrogates.atan(alpha=2.0)
    spikes, v = sj.neurons.lif(x_seq, tau=2.0, surrogate=sg)
    model = sj.models.create("resnet19", num_classes=10, T=4, sml_heads=(3, 6))
    loss = sj.losses.sml_loss(out.logits, out.aux_logits, labels)
"""

from snnjax import energy, layers, losses, models, neurons, surrogates

__all__ = ["energy", "layers", "losses", "models", "neurons", "surrogates"]
__version__ = "0.1.0"
