"""The model zoo: spiking ResNets, VGG nets and Surrogate Module Learning heads.

    import snnjax as sj
    model = sj.models.create("resnet19", num_classes=10, T=4, sml_heads=(3, 6))
    variables = model.init(key, images, train=False)
    out, updates = model.apply(variables, images, train=True,
                               mutable=["batch_stats", "intermediates"])
    out.logits       # [B, classes], mean over T of out.logits_seq
    out.logits_seq   # [T, B, classes]
    out.aux_logits   # one [B, classes] per SML head (train=True), () at eval
    snn_variables = sj.models.strip_heads(variables)   # for sml_heads=()
"""

from snnjax.models.common import LayerFactory, ModelOutput, SpikingNet, adaptive_avg_pool
from snnjax.models.registry import allowed_arguments, create, names, register
from snnjax.models.resnet import BasicBlock, ResNet
from snnjax.models.surrogate_module import SurrogateHead, strip_heads
from snnjax.models.vgg import ConvNet

__all__ = [
    "BasicBlock", "ConvNet", "LayerFactory", "ModelOutput", "ResNet", "SpikingNet",
    "SurrogateHead", "adaptive_avg_pool", "allowed_arguments", "create", "names", "register",
    "strip_heads",
]
