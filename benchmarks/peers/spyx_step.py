"""Spyx row: ResNet-19 with Spyx neurons and surrogate on Flax NNX layers (JAX).

Runs in its own virtual environment (Spyx pins its own JAX / Flax), e.g.
benchmarks/.venv-spyx (see benchmarks/setup_peers.sh); needs only this folder's
harness, not snnjax.

What Spyx 1.0 provides and what it cannot express:
  * Spyx models are Flax NNX modules stepped one time step at a time by
    ``spyx.nn.run`` (a ``jax.lax.scan`` of the whole model). Run that way,
    BatchNorm would normalise each step over B only. To get BN over the merged
    T*B axis, convs / BN / linear layers here act on [T*B, ...] and only the
    neurons are scanned over T with ``spyx.nn.run`` (one scan per neuron layer,
    the layout snnjax and SpikingJelly use).
  * ``spyx.nn.LIF`` has only a subtractive (soft) reset, fires from the
    membrane *before* integrating the current step's input (a one-step delay),
    and keeps beta as a Param. It cannot express the benchmark's LIF (hard reset
    to 0, h = v - v/tau + x, spike from h). The default row therefore uses a
    hard-reset LIF written against Spyx's stateful-layer contract
    ``(x_t, V) -> (spikes, V)`` (:class:`HardResetLIF`); ``spyx_neuron="builtin"``
    runs ``spyx.nn.LIF(beta=0.5)`` instead (beta frozen: not counted, not
    updated), a different network kept only as a reference.
  * ``spyx.axn.arctan(k)`` is 1 / (pi (1 + (k pi x)^2)), not SpikingJelly's
    atan(alpha) = (alpha/2) / (1 + (pi/2 alpha x)^2) (no k matches both width
    and height), so the surrogate is given through ``spyx.axn.custom``.

Run by the benchmark drivers: ``python spyx_step.py --spec JSON --out FILE``.
"""

from __future__ import annotations

import time
from typing import Any

import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax
import spyx
from flax import nnx

conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def atan(alpha: float = 2.0):
  """SpikingJelly's atan surrogate as a Spyx activation: H(x) forward, (alpha/2)/(1+(pi/2 alpha x)^2) backward."""
  return spyx.axn.custom(bwd=lambda x: (alpha / 2) / (1 + (jnp.pi / 2 * alpha * x) ** 2))


class HardResetLIF(nnx.Module):
  """LIF tau=2, decay_input=False, v_reset=0, hard reset, on Spyx's (x_t, V) -> (spikes, V) contract."""

  def __init__(self, activation, tau: float = 2.0, threshold: float = 1.0):
    self.spike, self.tau, self.threshold = activation, tau, threshold

  def __call__(self, x, V):
    h = V - V / self.tau + x
    spikes = self.spike(h - self.threshold)
    return spikes, h * (1 - spikes)


class Neuron(nnx.Module):
  """A neuron layer over [T, B, ...]: ``spyx.nn.run`` scans the stateful neuron from V = 0."""

  def __init__(self, kind: str, rngs: nnx.Rngs):
    if kind == "hard":
      self.cell = HardResetLIF(atan(2.0))
    else:
      self.cell = spyx.nn.LIF((), beta=0.5, threshold=1.0, activation=atan(2.0), rngs=rngs)

  def __call__(self, x):
    spikes, _ = spyx.nn.run(self.cell, x, state=jnp.zeros_like(x[0]))
    return spikes


def merged(module, x):
  """Applies a per-image module to [T, B, ...] through the merged [T*B, ...] view."""
  y = module(x.reshape(-1, *x.shape[2:]))
  return y.reshape(*x.shape[:2], *y.shape[1:])


class Layers:
  """Conv / BN / neuron / linear factories shared by the blocks (one dtype, one neuron kind)."""

  def __init__(self, neuron: str, dtype: Any, rngs: nnx.Rngs):
    self.neuron_kind, self.dtype, self.rngs = neuron, dtype, rngs

  def conv(self, cin, cout, k, s):
    p = k // 2
    return nnx.Conv(cin, cout, (k, k), strides=(s, s), padding=((p, p), (p, p)), use_bias=False,
                    kernel_init=conv_init, dtype=self.dtype, rngs=self.rngs)

  def bn(self, c):
    return nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, dtype=self.dtype, rngs=self.rngs)

  def neuron(self):
    return Neuron(self.neuron_kind, self.rngs)

  def linear(self, fin, fout):
    return nnx.Linear(fin, fout, dtype=self.dtype, rngs=self.rngs)


class BasicBlock(nnx.Module):
  """SN(BN(conv3x3(SN(BN(conv3x3_s(x))))) + shortcut(x)); shortcut BN(conv1x1_s) on shape change."""

  def __init__(self, L: Layers, cin: int, cout: int, stride: int):
    self.conv1, self.bn1, self.sn1 = L.conv(cin, cout, 3, stride), L.bn(cout), L.neuron()
    self.conv2, self.bn2, self.sn2 = L.conv(cout, cout, 3, 1), L.bn(cout), L.neuron()
    self.has_down = stride != 1 or cin != cout
    if self.has_down:
      self.down_conv, self.down_bn = L.conv(cin, cout, 1, stride), L.bn(cout)

  def __call__(self, x):
    y = self.sn1(merged(self.bn1, merged(self.conv1, x)))
    y = merged(self.bn2, merged(self.conv2, y))
    shortcut = merged(self.down_bn, merged(self.down_conv, x)) if self.has_down else x
    return self.sn2(y + shortcut)


class ResNet19(nnx.Module):
  """ResNet-19 of docs/methods.md section 6 (see torch_common's docstring), NHWC, time-major inside."""

  def __init__(self, spec: harness.Spec, dtype: Any, rngs: nnx.Rngs):
    c = lambda n: harness.channels(n, spec.width)
    L = Layers(spec.spyx_neuron, dtype, rngs)
    self.T, self.dtype = spec.T, dtype
    self.stem_conv, self.stem_bn, self.stem_sn = L.conv(3, c(64), 3, 1), L.bn(c(64)), L.neuron()
    blocks, cin = [], c(64)
    for n_blocks, base, stride in ((3, 128, 1), (3, 256, 2), (2, 512, 2)):
      for b in range(n_blocks):
        blocks.append(BasicBlock(L, cin, c(base), stride if b == 0 else 1))
        cin = c(base)
    self.blocks = nnx.List(blocks)
    self.fc_hidden, self.sn_hidden = L.linear(cin, c(256)), L.neuron()
    self.fc = L.linear(c(256), spec.num_classes)

  def __call__(self, images):
    x = jnp.broadcast_to(images[None], (self.T, *images.shape)).astype(self.dtype)
    x = self.stem_sn(merged(self.stem_bn, merged(self.stem_conv, x)))
    for block in self.blocks:
      x = block(x)
    x = jnp.mean(x, axis=(2, 3))
    x = self.fc(self.sn_hidden(self.fc_hidden(x)))
    return jnp.mean(x.astype(jnp.float32), axis=0)


def trainable(kind: str):
  """What the optimiser updates: every Param, except the frozen betas of spyx.nn.LIF."""
  return nnx.Param if kind == "hard" else nnx.All(nnx.Param, nnx.Not(nnx.PathContains("beta")))


class Bench:
  """A compiled Spyx / NNX train step (functional split / merge under jax.jit) on a fixed batch."""

  def __init__(self, spec: harness.Spec):
    self.spec = spec
    dtype = jnp.bfloat16 if spec.dtype == "bfloat16" else jnp.float32
    model = ResNet19(spec, dtype, nnx.Rngs(spec.seed))
    model.train()
    wrt = trainable(spec.spyx_neuron)
    tx = optax.adamw(spec.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=spec.weight_decay,
                     mask=lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params))
    optimizer = nnx.Optimizer(model, tx, wrt=wrt)
    self.n_params = sum(int(np.prod(jnp.shape(p))) for p in jax.tree.leaves(nnx.state(model, wrt)))
    self.graphdef, self.state = nnx.split((model, optimizer))
    rng = np.random.default_rng(spec.seed)
    size = spec.image_size
    self.images = jnp.asarray(rng.normal(size=(spec.batch, size, size, 3)), jnp.float32)
    self.labels = jnp.asarray(rng.integers(0, spec.num_classes, spec.batch), jnp.int32)
    graphdef = self.graphdef

    def train_step(state, images, labels):
      model, optimizer = nnx.merge(graphdef, state)

      def loss_fn(model):
        logits = model(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

      loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt))(model)
      optimizer.update(model, grads)
      return nnx.state((model, optimizer)), loss

    self.train_step = jax.jit(train_step, donate_argnums=0)
    self.compiled = None
    self._loss = None

  def compile(self) -> float:
    t = time.perf_counter()
    self.compiled = self.train_step.lower(self.state, self.images, self.labels).compile()
    return time.perf_counter() - t

  def step(self) -> None:
    self.state, self._loss = self.compiled(self.state, self.images, self.labels)
    jax.block_until_ready((self.state, self._loss))

  def loss(self) -> float:
    return float(self._loss)

  def reset_peak(self) -> None:
    pass

  def info(self) -> dict[str, Any]:
    memory = self.compiled.memory_analysis()
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {
        "xla_temp_mb": getattr(memory, "temp_size_in_bytes", 0) / harness.MIB,
        "device_peak_mb": None if peak is None else peak / harness.MIB,
        "versions": {p: harness.version(p) for p in ("spyx", "jax", "jaxlib", "flax", "optax")},
        "spyx_neuron": self.spec.spyx_neuron,
        "backend": jax.default_backend(),
    }


if __name__ == "__main__":
  harness.main(Bench)
