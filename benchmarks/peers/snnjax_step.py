"""snnjax row (and the ANN limit): the real snnjax training step on ResNet-19.

The step is ``snnjax.train.steps.make_train_step`` built from a
``snnjax.train.config.base_config()`` config, jitted with the state donated as
in ``snnjax.train.loop``: forward in train mode, CE on the time-mean logits,
backward, AdamW (optax, decay on kernels only), plus the step's own metrics
(accuracy, gradient norm, per-layer firing rates). Nothing is hand-written here.

"ann": the same model with ``spiking=False`` (ReLU instead of LIF) and T=1 on
a batch of T*B images: the same convolution work without the neurons' time
loop, the limit an SNN step can approach.

Run by the benchmark drivers: ``python snnjax_step.py --spec JSON --out FILE``.
"""

from __future__ import annotations

import time
from typing import Any

import harness
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from snnjax import xla_flags
from snnjax.train import config as config_lib
from snnjax.train import optim, steps

xla_flags.apply()   # train.py's XLA flags; JAX creates its backend only at the first use


def make_config(spec: harness.Spec) -> ml_collections.ConfigDict:
  """The benchmark network as an snnjax config: ResNet-19, LIF tau=2, hard reset, atan(2)."""
  ann = spec.framework == "ann"
  c = config_lib.base_config()
  c.model.update(dict(
      name="resnet19", T=1 if ann else spec.T, neuron="lif", tau=2.0, decay_input=False,
      v_threshold=1.0, v_reset=0.0, reset="hard", detach_reset=False,
      surrogate="atan(alpha=2.0)", width=spec.width, dtype=spec.dtype, remat=spec.remat))
  c.gradient = spec.gradient
  if ann:
    c.model.options.spiking = False
  c.data.source = "synthetic"
  c.data.num_classes = spec.num_classes
  c.data.synthetic.shape = (spec.image_size, spec.image_size, 3)
  c.optimizer.update(dict(name="adamw", learning_rate=spec.lr, weight_decay=spec.weight_decay,
                          schedule="constant", warmup_epochs=0.0))
  c.batch_size = spec.batch * (spec.T if ann else 1)
  c.progress_bar = False
  config_lib.validate(c)
  return c


def device_peak_mb() -> float | None:
  """Peak bytes in use on the default device (GPU); None where unavailable (CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else peak / harness.MIB


class Bench:
  """A compiled snnjax train step on a fixed random batch."""

  def __init__(self, spec: harness.Spec):
    self.spec = spec
    config = make_config(spec)
    model = config_lib.build_model(config, spec.num_classes)
    tx, schedule = optim.make_optimizer(config.optimizer, steps_per_epoch=1000, total_steps=1000)
    rng = np.random.default_rng(spec.seed)
    n = config.batch_size
    self.batch = {
        "image": jnp.asarray(rng.normal(size=(n, spec.image_size, spec.image_size, 3)),
                             jnp.float32),
        "label": jnp.asarray(rng.integers(0, spec.num_classes, n), jnp.int32),
    }
    init = jax.jit(lambda key: steps.init_state(model, tx, key, self.batch["image"],
                                                lipschitz=False))
    self.state = init(jax.random.key(spec.seed))
    self.n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(self.state.params))
    self.train_step = jax.jit(steps.make_train_step(model, tx, config, schedule),
                              donate_argnums=0)
    self.compiled = None
    self.metrics: dict[str, Any] = {}

  def compile(self) -> float:
    t = time.perf_counter()
    self.compiled = self.train_step.lower(self.state, self.batch).compile()
    return time.perf_counter() - t

  def step(self) -> None:
    self.state, self.metrics = self.compiled(self.state, self.batch)
    jax.block_until_ready((self.state, self.metrics))

  def loss(self) -> float:
    return float(self.metrics["loss"])

  def reset_peak(self) -> None:
    pass  # JAX cannot reset the device's peak counter; compilation allocates no device buffers.

  def info(self) -> dict[str, Any]:
    memory = self.compiled.memory_analysis()
    rates = [float(v) for k, v in self.metrics.items() if k.startswith("firing_rate/")]
    return {
        "xla_temp_mb": getattr(memory, "temp_size_in_bytes", 0) / harness.MIB,
        "xla_argument_mb": getattr(memory, "argument_size_in_bytes", 0) / harness.MIB,
        "device_peak_mb": device_peak_mb(),
        "mean_firing_rate": float(np.mean(rates)) if rates else None,
        "versions": {"jax": jax.__version__, "jaxlib": harness.version("jaxlib"),
                     "flax": harness.version("flax"), "optax": harness.version("optax"),
                     "snnjax": harness.version("snnjax")},
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
    }


if __name__ == "__main__":
  harness.main(Bench)
