"""SpikingJelly twin of an snnjax plain-ConvNet config: the same network and recipe, trained.

The accuracy benchmark (``benchmarks/accuracy.py``) trains snnjax's default
Fashion-MNIST config (``configs/fmnist_vgg_sml.py``) with ``train.py`` and this
script trains the identical network with the identical recipe in PyTorch +
SpikingJelly 2.0 (``spikingjelly.activation_based``, multi-step mode "m").

The recipe is not copied: ``--describe`` resolves the snnjax config (with
overrides) in a JAX process and writes it as JSON (the "recipe"); the trainer
reads that and refuses any setting it does not implement. The recipe also holds
snnjax's parameter counts (``jax.eval_shape`` over the model's init) and sample
points of its learning-rate schedule, which the trainer checks against its own.

The network (snnjax.models.vgg.ConvNet, e.g. VGG-small in the ISNM form), with
c = max(1, round(channels * width)) and input [B, C, H, W] repeated over T:

    layer l:  c_l = pool(BN_l(conv3x3_l(x_{l-1})))   (pool: 2x2/2 max or avg, if planned)
              x_l = SN_l(c_l)                         (x_0 = input; pool_on="spikes": after SN)
    readout:  [adaptive avg-pool to pool_to] -> flatten -> FC at every step; logits = mean_t

ISNM ("Gradual Surrogate Gradient Learning", Chen et al. 2022) passes currents
c_l between layers with SN_{l-1} internal to layer l and FC(SN_L(c_L)) at the
output: the same operations in the same order, so one module computes both
forms (snnjax's tests check the two forms agree). Convs bias-free, 3x3, padding
1, Kaiming-normal fan_out; BN over the merged T*B axis, eps 1e-5, PyTorch
momentum = 1 - Flax momentum, scale 1, bias 0; FC with bias, LeCun-normal
(truncated at 2 sigma) weights and zero bias, Flax's Dense default. Neurons:
``neuron.LIFNode(tau, decay_input, v_threshold, v_reset (None = soft reset),
surrogate.ATan(alpha), detach_reset, step_mode="m")``:
h = v - (v - v_reset)/tau + x (decay_input=False), s = H(h - v_th), hard reset.

SML heads (snnjax.models.surrogate_module.SurrogateHead) on the firing rate
mean_t x_l of block l, k = head_channels: [1x1 conv to k if C > k] ->
kC7s2 -> kC5s2 -> kC3s1 (each conv - BN - LeakyReLU(0.01)) -> adaptive avg-pool
2x2 -> FC 512 (bias if sml.head_bias) - BN1d - LeakyReLU -> FC classes. Train mode only.

Loss (snnjax.losses.sml_loss), N heads with logits y_i, SNN logits y_c:
L_C = (CE(y_c) + alpha sum_i CE(y_i)) / (1 + N alpha),
KL_i = KL(sg(y_i) -> y_c) + KL(sg(y_c) -> y_i) at temperature T_dis (no T^2),
L = (1 - lam) L_C + lam / (2N) sum_i KL_i; without heads L = CE(y_c).

Optimiser: torch.optim.AdamW (b1, b2 of the config, eps 1e-8 as optax),
decoupled weight decay on weights with ndim >= 2 only, optional global-norm
clipping first; lr(t) for update t = 0, 1, ... (optax's count):
base t / W for t < W, then base (1 + cos(pi min(t - W, S - W) / (S - W))) / 2
(cosine) or base (constant), W = round(warmup_epochs * steps_per_epoch), S the
total steps of num_epochs.

Data: Fashion-MNIST IDX arrays (snnjax.data.idx, reading only), a fresh
permutation every epoch, epochs concatenated and cut into batches of B
(batches run across epoch boundaries, steps_per_epoch = N // B, as snnjax's
pipeline); per example zero-pad + random crop (if configured), then a left-right
flip with probability 1/2, then (x / 255 - mean) / std. Evaluation: the head-less
SNN in eval mode (BN running statistics) on the whole eval split; accuracy of
the time-mean logits; every eval_every_epochs and after the last step.

    python benchmarks/peers/spikingjelly_fmnist.py --describe --config configs/fmnist_vgg_sml.py \\
        --set num_epochs=1 --out recipe.json        # snnjax's side (JAX, CPU)
    python benchmarks/peers/spikingjelly_fmnist.py --recipe recipe.json --out record.json \\
        [--device gpu]                              # train the twin
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import os
import pathlib
import sys
import time
import traceback
from typing import Any

import harness
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = str(ROOT / "configs" / "fmnist_vgg_sml.py")

#: Flax's truncated-normal initialisers divide the stddev by this (the stddev of a
#: unit normal truncated to [-2, 2]), so the truncated weights have the asked variance.
TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


# ---------------------------------------------------------------------------
# The snnjax side: the resolved config as a JSON recipe (imports JAX).


def parse_override(item: str) -> tuple[str, Any]:
  """"a.b=v" -> ("a.b", v): v as a Python literal if it parses as one, else the string.

  (:func:`load_config` keeps the string for string-valued keys, as train.py's flags.)
  """
  key, sep, text = item.partition("=")
  if not sep or not key:
    raise ValueError(f"override {item!r} is not KEY=VALUE, e.g. num_epochs=2.")
  try:
    return key, ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return key, text


def load_config(path: str, overrides: list[str]):
  """``get_config()`` of an snnjax config file, with "a.b=v" overrides applied."""
  spec = importlib.util.spec_from_file_location("snnjax_experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for item in overrides:
    key, value = parse_override(item)
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    if leaf not in node:
      raise ValueError(f"override {item!r}: config has no key {key!r}.")
    node[leaf] = item.partition("=")[2] if isinstance(node[leaf], str) else value
  return config


def _count(tree) -> tuple[int, int]:
  """(parameters, parameters in leaves with ndim >= 2, i.e. those weight decay applies to)."""
  import jax
  leaves = jax.tree.leaves(tree)
  return (sum(int(np.prod(p.shape)) for p in leaves),
          sum(int(np.prod(p.shape)) for p in leaves if len(p.shape) >= 2))


def describe(config_path: str, overrides: list[str]) -> dict[str, Any]:
  """The snnjax run a config describes, as JSON-able facts for the twin (and the driver).

  Data facts come from snnjax's own pipeline functions, schedule lengths from
  its training loop, parameter counts from ``jax.eval_shape`` of the model's
  init with and without the SML heads.
  """
  import jax
  import jax.numpy as jnp

  from snnjax import layers, surrogates
  from snnjax.data import pipeline
  from snnjax.train import config as config_lib, loop, optim

  config = load_config(config_path, overrides)
  config_lib.validate(config)
  train_info = pipeline.create_source(config.data, config.data.train_split)
  eval_info = pipeline.create_source(config.data, config.data.eval_split)
  transform, image_shape = pipeline.make_transform(config.data, train_info, train=True)
  steps_per_epoch = len(train_info.data) // config.batch_size
  total, run = loop._schedule_lengths(config, steps_per_epoch)  # the loop's own rule
  schedule = optim.learning_rate_schedule(config.optimizer, steps_per_epoch, total)
  warmup = int(round(config.optimizer.warmup_epochs * steps_per_epoch))
  probes = sorted({t for t in (0, 1, warmup - 1, warmup, warmup + 1, total // 2, run - 1,
                               total - 1, total) if t >= 0})
  sample = jnp.zeros((1, *image_shape), jnp.float32)

  def counts(sml: bool) -> tuple[Any, tuple[int, int]]:
    c = config.copy_and_resolve_references()
    c.sml.enabled = sml and config.sml.enabled
    model = config_lib.build_model(c, train_info.num_classes)
    shapes = jax.eval_shape(lambda key: model.init(key, sample, train=False),
                            jax.random.key(0))
    return model, _count(shapes["params"])

  model, (n_heads, n_heads_decayed) = counts(sml=True)
  _, (n_snn, n_snn_decayed) = counts(sml=False)
  surrogate = surrogates.as_surrogate(config.model.surrogate)
  return {
      "config_path": config_path,
      "overrides": list(overrides),
      "config": json.loads(config.to_json_best_effort()),
      "model": {
          "class": type(model).__name__,
          "plan": [list(p) for p in _parse_plan(model)],
          "form": getattr(model, "form", None),
          "pool_on": getattr(model, "pool_on", None),
          "pool_to": getattr(model, "pool_to", None),
          "spiking": model.spiking,
          "bn_per_step": model.bn_per_step,
          "surrogate": {"name": getattr(surrogate, "name", type(surrogate).__name__),
                        "params": {k: float(v) for k, v in
                                   surrogates.parameters(surrogate).items()}},
      },
      "data": {
          "num_train": len(train_info.data), "num_eval": len(eval_info.data),
          "num_classes": train_info.num_classes, "image_shape": list(image_shape),
          "mean": list(transform.mean), "std": list(transform.std),
          "crop_padding": transform.crop_padding, "flip": transform.flip,
          "policy": transform.policy, "cutout": transform.cutout,
          "image_size": transform.image_size,
      },
      "steps_per_epoch": steps_per_epoch,
      "total_steps": total,
      "run_steps": run,
      "warmup_steps": warmup,
      "eval_every_steps": max(1, int(round(config.eval_every_epochs * steps_per_epoch))),
      "lr_probe": {str(t): float(schedule(t)) for t in probes},
      "n_params": n_snn,
      "n_params_with_heads": n_heads,
      "n_decayed": n_snn_decayed,
      "n_decayed_with_heads": n_heads_decayed,
      "backend": jax.default_backend(),
      "device_kind": jax.devices()[0].device_kind,
      "versions": {p: harness.version(p) for p in ("jax", "jaxlib", "flax", "optax", "snnjax")},
      "hardware": harness.hardware(),
  }


def _parse_plan(model) -> tuple:
  from snnjax.models import vgg
  if not isinstance(model, vgg.ConvNet):
    raise NotImplementedError(f"the SpikingJelly twin builds snnjax's plain ConvNets "
                              f"(vgg_small, vggsnn, depth_net), not {type(model).__name__}.")
  return vgg.parse_plan(model.plan)


def check_supported(recipe: dict[str, Any]) -> None:
  """Raises NotImplementedError for any setting of the recipe the twin does not reproduce."""
  c, m, d = recipe["config"], recipe["model"], recipe["data"]
  problems = []
  if c["model"]["neuron"] != "lif":
    problems.append(f"neuron {c['model']['neuron']!r} (twin: lif)")
  if m["surrogate"]["name"] != "atan":
    problems.append(f"surrogate {m['surrogate']['name']!r} (twin: atan)")
  if c["model"]["dtype"] != "float32":
    problems.append(f"dtype {c['model']['dtype']!r} (twin: float32)")
  if not m["spiking"] or m["bn_per_step"]:
    problems.append("spiking=False or bn_per_step=True")
  if c["optimizer"]["name"] != "adamw":
    problems.append(f"optimizer {c['optimizer']['name']!r} (twin: adamw)")
  if c["loss"]["name"] != "ce" or c["loss"]["lipschitz_weight"]:
    problems.append("a loss other than CE / SML, or the Lipschitz penalty")
  if c["estimator"]["schedule"]["param"] or c["estimator"]["chi"]["enabled"]:
    problems.append("surrogate schedules or the chi controller")
  if c["data"]["source"] != "fashion_mnist_idx":
    problems.append(f"data source {c['data']['source']!r} (twin: fashion_mnist_idx)")
  if d["policy"] != "none" or d["cutout"] or d["image_size"]:
    problems.append("augmentation policies, cutout or resizing")
  if problems:
    raise NotImplementedError("the SpikingJelly twin does not implement: " + "; ".join(problems))


# ---------------------------------------------------------------------------
# Learning rate, data (NumPy).


def learning_rate(step: int, base: float, warmup: int, total: int, schedule: str) -> float:
  """lr of update ``step`` (0-based): base t / W for t < W, then cosine to 0 or constant.

  Cosine: base (1 + cos(pi min(t - W, D) / D)) / 2 with D = max(S - W, 1), optax's
  join of linear_schedule(0, base, W) and cosine_decay_schedule(base, D).
  """
  if step < warmup:
    return base * step / warmup
  if schedule == "constant":
    return base
  decay = max(total - warmup, 1)
  return base * 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay) / decay))


def check_schedule(recipe: dict[str, Any]) -> None:
  """Raises ValueError unless :func:`learning_rate` matches snnjax's schedule at the probes."""
  o = recipe["config"]["optimizer"]
  for step, expected in recipe["lr_probe"].items():
    got = learning_rate(int(step), o["learning_rate"], recipe["warmup_steps"],
                        recipe["total_steps"], o["schedule"])
    if not math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-9):
      raise ValueError(f"learning rate at step {step}: twin {got}, snnjax {expected}")


def split_rows(split: str) -> tuple[str, slice]:
  """"test" -> ("test", [:]); "test[:256]" -> ("test", [:256]) (snnjax's split syntax)."""
  name, _, rest = split.partition("[")
  if not rest:
    return name, slice(None)
  start, _, stop = rest.rstrip("]").partition(":")
  return name, slice(int(start) if start else None, int(stop) if stop else None)


def load_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [N, 28, 28, 1] and int64 labels [N] of one (sliced) Fashion-MNIST split."""
  os.environ.setdefault("JAX_PLATFORMS", "cpu")   # importing snnjax imports JAX; keep it off GPUs
  from snnjax.data import idx  # reading the IDX files only
  name, rows = split_rows(split)
  images, labels = idx.load_fashion_mnist(folder, name)
  return images[rows], labels[rows].astype(np.int64)


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
  """uint8 NHWC -> float32 NCHW, (x / 255 - mean[c]) / std[c]."""
  x = (images.astype(np.float32) * np.float32(1 / 255) - np.asarray(mean, np.float32)) \
      * (1 / np.asarray(std, np.float32))
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def crop_and_flip(images: np.ndarray, rng: np.random.Generator, padding: int,
                  flip: bool) -> np.ndarray:
  """Per example: zero-pad by ``padding``, crop back at a uniform offset; mirror W w.p. 1/2."""
  out = images
  if padding > 0:
    h, w = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = rng.integers(0, 2 * padding + 1, size=(len(images), 2))
    out = np.stack([p[t:t + h, l:l + w] for p, (t, l) in zip(padded, offsets)])
  if flip:
    mirror = rng.random(len(images)) < 0.5
    out = out.copy()
    out[mirror] = out[mirror, :, ::-1]
  return out


class TrainStream:
  """Training batches: epochs of fresh permutations, concatenated and cut into batches of B.

  Batch g is elements [g B, (g + 1) B) of perm_0 ++ perm_1 ++ ..., so batches run
  across epoch boundaries and none is dropped (snnjax's repeat-then-batch).
  """

  def __init__(self, images, labels, batch: int, seed: int, mean, std, padding: int, flip: bool):
    self.images, self.labels, self.batch = images, labels, batch
    self.mean, self.std, self.padding, self.flip = mean, std, padding, flip
    self.rng = np.random.default_rng([seed, 1])
    self.pending = np.zeros((0,), np.int64)

  def next(self) -> tuple[np.ndarray, np.ndarray]:
    while len(self.pending) < self.batch:
      self.pending = np.concatenate([self.pending, self.rng.permutation(len(self.images))])
    rows, self.pending = self.pending[:self.batch], self.pending[self.batch:]
    images = crop_and_flip(self.images[rows], self.rng, self.padding, self.flip)
    return normalize(images, self.mean, self.std), self.labels[rows]


# ---------------------------------------------------------------------------
# The network and loss (PyTorch + SpikingJelly).


def build_net(recipe: dict[str, Any]):
  """The twin of the recipe's snnjax ConvNet (with its SML heads), initialised like Flax."""
  import torch
  from spikingjelly.activation_based import layer, neuron, surrogate
  from torch import nn

  c, m, d = recipe["config"], recipe["model"], recipe["data"]
  mc = c["model"]
  bn_momentum = 1 - mc["bn_momentum"]
  heads = tuple(c["sml"]["heads"]) if c["sml"]["enabled"] else ()

  def lif():
    return neuron.LIFNode(
        tau=mc["tau"], decay_input=mc["decay_input"], v_threshold=mc["v_threshold"],
        v_reset=None if mc["reset"] == "soft" else mc["v_reset"],
        surrogate_function=surrogate.ATan(alpha=m["surrogate"]["params"]["alpha"]),
        detach_reset=mc["detach_reset"], step_mode="m")

  class SurrogateHead(nn.Module):
    """SML head on a rate map [B, C, H, W] -> logits [B, classes] (see the module docstring)."""

    def __init__(self, cin: int, k: int, classes: int, hidden: int = 512, bias: bool = True):
      super().__init__()

      def conv_bn_act(cin, kernel, stride):
        return [nn.Conv2d(cin, k, kernel, stride, kernel // 2, bias=False),
                nn.BatchNorm2d(k, eps=1e-5, momentum=bn_momentum), nn.LeakyReLU(0.01)]

      reduce = conv_bn_act(cin, 1, 1) if cin > k else []
      self.body = nn.Sequential(
          *reduce, *conv_bn_act(k if reduce else cin, 7, 2), *conv_bn_act(k, 5, 2),
          *conv_bn_act(k, 3, 1), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
          nn.Linear(4 * k, hidden, bias=bias), nn.BatchNorm1d(hidden, eps=1e-5,
                                                               momentum=bn_momentum),
          nn.LeakyReLU(0.01), nn.Linear(hidden, classes))

    def forward(self, rate):
      return self.body(rate)

  class ConvNet(nn.Module):
    """The snnjax ConvNet over [T, B, C, H, W]; forward(images) -> (logits, head logits)."""

    def __init__(self):
      super().__init__()
      self.T, self.pool_on = mc["T"], m["pool_on"]
      cin, size = d["image_shape"][-1], d["image_shape"][0]
      self.convs, self.bns, self.pools, self.sns = (nn.ModuleList() for _ in range(4))
      self.heads = nn.ModuleDict()
      pools = {"max": layer.MaxPool2d, "avg": layer.AvgPool2d}
      for l, (features, stride, pool) in enumerate(m["plan"], 1):
        cout = harness.channels(features, mc["width"])
        self.convs.append(layer.Conv2d(cin, cout, 3, stride, 1, bias=False, step_mode="m"))
        self.bns.append(layer.BatchNorm2d(cout, eps=1e-5, momentum=bn_momentum, step_mode="m"))
        self.pools.append(pools[pool](2, 2, step_mode="m") if pool else nn.Identity())
        self.sns.append(lif())
        size = (size - 1) // stride + 1
        size = size // 2 if pool else size
        if l in heads:
          self.heads[str(l)] = SurrogateHead(cout, c["sml"]["head_channels"], d["num_classes"],
                                             bias=c["sml"].get("head_bias", True))
        cin = cout
      self.readout = (layer.AdaptiveAvgPool2d(m["pool_to"], step_mode="m") if m["pool_to"]
                      else nn.Identity())
      size = m["pool_to"] or size
      self.fc = layer.Linear(cin * size * size, d["num_classes"], step_mode="m")

    def forward(self, images):
      x = images.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)   # direct encoding
      aux = []
      for l in range(1, len(self.convs) + 1):
        c = self.bns[l - 1](self.convs[l - 1](x))
        if self.pool_on == "current":
          c = self.pools[l - 1](c)
        x = self.sns[l - 1](c)
        if self.pool_on == "spikes":
          x = self.pools[l - 1](x)
        if self.training and str(l) in self.heads:
          aux.append(self.heads[str(l)](x.mean(0)))
      x = self.readout(x).flatten(2)                       # [T, B, features]
      return self.fc(x).mean(0), aux

  torch.manual_seed(c["seed"])
  net = ConvNet()
  for module in net.modules():
    if isinstance(module, nn.Conv2d):
      nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
      std = math.sqrt(1 / module.in_features) / TRUNCATED_NORMAL_STDDEV
      nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
      if module.bias is not None:
        nn.init.zeros_(module.bias)
  return net


def count_parameters(net) -> dict[str, int]:
  """Parameter counts of the SNN (heads excluded) and with heads; ``decayed``: ndim >= 2."""
  counts = {"n_params": 0, "n_params_with_heads": 0, "n_decayed": 0, "n_decayed_with_heads": 0}
  for name, p in net.named_parameters():
    for suffix, included in (("", not name.startswith("heads.")), ("_with_heads", True)):
      if included:
        counts["n_params" + suffix] += p.numel()
        counts["n_decayed" + suffix] += p.numel() if p.ndim >= 2 else 0
  return counts


def kl_divergence(teacher, student, temperature: float):
  """KL(teacher -> student) = mean_b sum_k p_t (log p_t - log p_s), p = softmax(z / T)."""
  import torch.nn.functional as F
  log_pt = F.log_softmax(teacher / temperature, -1)
  log_ps = F.log_softmax(student / temperature, -1)
  return (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()


def sml_loss(logits, aux, labels, alpha: float, lam: float, temperature: float):
  """snnjax.losses.sml_loss: (1 - lam) L_C + lam / (2N) sum_i KL_i; CE(y_c) when N = 0."""
  import torch.nn.functional as F
  ce_main = F.cross_entropy(logits, labels)
  n = len(aux)
  if n == 0:
    return ce_main
  ce_heads = sum(F.cross_entropy(y, labels) for y in aux)
  kl = sum(kl_divergence(y.detach(), logits, temperature)
           + kl_divergence(logits.detach(), y, temperature) for y in aux)
  return (1 - lam) * (ce_main + alpha * ce_heads) / (1 + n * alpha) + lam / (2 * n) * kl


def adamw(net, o: dict[str, Any]):
  """AdamW as optax's: b1, b2 of the config, eps 1e-8, decay on weights with ndim >= 2 only."""
  import torch
  params = [p for p in net.parameters() if p.requires_grad]
  return torch.optim.AdamW(
      [{"params": [p for p in params if p.ndim >= 2], "weight_decay": o["weight_decay"]},
       {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
      lr=0.0, betas=(o["b1"], o["b2"]), eps=1e-8)


# ---------------------------------------------------------------------------
# Training.


def evaluate(net, images: np.ndarray, labels: np.ndarray, batch: int, device) -> dict[str, float]:
  """Head-less SNN in eval mode over the split: accuracy and mean CE of the time-mean logits."""
  import torch
  import torch.nn.functional as F
  from spikingjelly.activation_based import functional
  net.eval()
  correct, loss = torch.zeros((), device=device), torch.zeros((), device=device)
  with torch.no_grad():
    for start in range(0, len(images), batch):
      x = torch.from_numpy(images[start:start + batch]).to(device)
      y = torch.from_numpy(labels[start:start + batch]).to(device)
      logits, _ = net(x)
      functional.reset_net(net)
      correct += (logits.argmax(-1) == y).sum()
      loss += F.cross_entropy(logits, y, reduction="sum")
  net.train()
  return {"test_accuracy": float(correct) / len(images), "test_loss": float(loss) / len(images)}


def cuda_versions(device) -> dict[str, str]:
  """CUDA and SpikingJelly's LIF CUDA implementation (SJ_LIF_CUDA_IMPLEMENTATION) on a GPU."""
  import torch
  if device.type != "cuda":
    return {}
  return {"cuda": str(torch.version.cuda),
          "sj_lif_cuda_implementation": os.environ.get("SJ_LIF_CUDA_IMPLEMENTATION", "auto")}


def train(recipe: dict[str, Any], device_name: str, threads: int = 0) -> dict[str, Any]:
  """Trains the twin for the recipe's run_steps; returns the record's measured fields."""
  import torch
  from spikingjelly.activation_based import functional

  start = time.perf_counter()
  check_supported(recipe)
  check_schedule(recipe)
  c, d = recipe["config"], recipe["data"]
  torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
  device = torch.device("cuda" if device_name == "gpu" else "cpu")
  net = build_net(recipe).to(device)
  net.train()
  counts = count_parameters(net)
  mismatch = {k: (v, recipe[k]) for k, v in counts.items() if v != recipe[k]}
  if mismatch:
    raise ValueError(f"parameter counts differ from snnjax's (twin, snnjax): {mismatch}")
  optimizer = adamw(net, c["optimizer"])
  params = [p for p in net.parameters()]
  train_images, train_labels = load_split(c["data"]["folder"], c["data"]["train_split"])
  eval_images, eval_labels = load_split(c["data"]["folder"], c["data"]["eval_split"])
  eval_images = normalize(eval_images, d["mean"], d["std"])
  stream = TrainStream(train_images, train_labels, c["batch_size"], c["seed"], d["mean"],
                       d["std"], d["crop_padding"], d["flip"])
  o, s = c["optimizer"], c["sml"]
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  setup_s = time.perf_counter() - start

  windows, evals, pending = [], [], []
  eval_s = 0.0
  window_start, window_step = time.perf_counter(), 0

  def flush(step: int) -> None:
    nonlocal pending, window_start, window_step
    if not pending:
      return
    values = torch.stack([torch.stack(p) for p in pending]).cpu().numpy()
    if not np.all(np.isfinite(values[:, 0])):
      raise FloatingPointError(f"non-finite loss in steps {window_step + 1}..{step}")
    elapsed = time.perf_counter() - window_start
    lrs = [learning_rate(t, o["learning_rate"], recipe["warmup_steps"], recipe["total_steps"],
                         o["schedule"]) for t in range(window_step, step)]
    windows.append({"step": step, "loss": float(values[:, 0].mean()),
                    "accuracy": float(values[:, 1].mean()), "learning_rate": float(np.mean(lrs)),
                    "images_per_s": (step - window_step) * c["batch_size"] / elapsed})
    print(f"step {step}: loss {windows[-1]['loss']:.4f} acc {windows[-1]['accuracy']:.3f} "
          f"{windows[-1]['images_per_s']:.0f} images/s", file=sys.stderr, flush=True)
    pending, window_start, window_step = [], time.perf_counter(), step

  train_start = time.perf_counter()
  for step in range(recipe["run_steps"]):
    x, y = stream.next()
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    lr = learning_rate(step, o["learning_rate"], recipe["warmup_steps"], recipe["total_steps"],
                       o["schedule"])
    for group in optimizer.param_groups:
      group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    logits, aux = net(x)
    loss = sml_loss(logits, aux, y, s["alpha"], s["lam"], s["temperature"]) if s["enabled"] \
        else torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    if o["clip_norm"]:
      torch.nn.utils.clip_grad_norm_(params, o["clip_norm"])
    optimizer.step()
    functional.reset_net(net)
    pending.append((loss.detach(), (logits.detach().argmax(-1) == y).float().mean()))
    done = step + 1
    if done % c["log_every_steps"] == 0:
      flush(done)
    if done % recipe["eval_every_steps"] == 0 or done == recipe["run_steps"]:
      flush(done)
      sync()
      t = time.perf_counter()
      evals.append({"step": done, "epoch": done / recipe["steps_per_epoch"],
                    **evaluate(net, eval_images, eval_labels, c["batch_size"], device)})
      eval_s += time.perf_counter() - t
      print(f"step {done}: test accuracy {evals[-1]['test_accuracy']:.4f}", file=sys.stderr,
            flush=True)
      window_start = time.perf_counter()
  sync()
  train_s = time.perf_counter() - train_start - eval_s
  steps = recipe["run_steps"]
  return {
      **counts,
      "test_accuracy": evals[-1]["test_accuracy"],
      "test_loss": evals[-1]["test_loss"],
      "steps": steps,
      "epochs": steps / recipe["steps_per_epoch"],
      "setup_s": setup_s,
      "train_s": train_s,
      "eval_s": eval_s,
      "train_images_per_s_overall": steps * c["batch_size"] / train_s,
      "train_log": windows,
      "evals": evals,
      "torch_threads": torch.get_num_threads(),
      "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                      else harness.hardware()["cpu"]),
      "backend": device.type,
      "versions": {"torch": torch.__version__, "spikingjelly": harness.version("spikingjelly"),
                   "numpy": np.__version__, **cuda_versions(device)},
  }


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__)
  p.add_argument("--describe", action="store_true",
                 help="write snnjax's recipe (JSON) for --config instead of training")
  p.add_argument("--config", default=DEFAULT_CONFIG, help="snnjax config file")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="config override, e.g. num_epochs=2 or data.eval_split='test[:256]'")
  p.add_argument("--recipe", default=None,
                 help="recipe JSON from --describe (default: describe --config in this process)")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: visible cores)")
  p.add_argument("--out", required=True, help="where to write the JSON recipe or record")
  args = p.parse_args(argv)
  if args.describe:
    result = describe(args.config, args.set)
    code = 0
  else:
    result = {"framework": "spikingjelly", "ok": False}
    try:
      if args.recipe:
        with open(args.recipe) as f:
          recipe = json.load(f)
      else:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")   # JAX only resolves the config here
        recipe = describe(args.config, args.set)
      result.update(train(recipe, args.device, args.threads))
      result["ok"] = True
    except Exception as e:  # the driver reports it
      result["error"] = f"{type(e).__name__}: {e}"
      result["traceback"] = traceback.format_exc()
      print(result["traceback"], file=sys.stderr)
    result["hardware"] = harness.hardware()
    result["peak_rss_mb"] = harness.maxrss_mb()
    code = 0 if result["ok"] else 1
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  return code


if __name__ == "__main__":
  sys.exit(main())
