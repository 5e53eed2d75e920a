"""XLA:CPU's convolution paths against PyTorch's (oneDNN), per op and per training step.

For each set of XLA flags (one subprocess each, since XLA reads $XLA_FLAGS once) it
times, at the convolutions of spiking ResNet-19 (width --width, 32x32, T*B rows):
the forward conv, the gradient w.r.t. the input (dX) and w.r.t. the weights (dW),
each jitted alone; then snnjax's real training step (benchmarks/peers/snnjax_step.py
path: snnjax.train.steps.make_train_step) of that ResNet-19. PyTorch times the same
three convolutions with torch.nn.grad. Every figure is the median of --repeats timed
calls after --warmup, on the threads XLA and PyTorch use by default (all cores).

    python benchmarks/cpu_conv_paths.py --out docs/results/cpu_conv_paths.json

It also checks that every flag set gives the default path's loss and gradients
(float32 tolerance), so a faster path is only adopted if it computes the same step.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402  (standard library only)

#: Flag sets compared (name -> $XLA_FLAGS); "default" is XLA's own choice.
FLAG_SETS = {
    "default": "",
    "ynn_off": "--xla_cpu_experimental_ynn_fusion_type=",
    "ynn_no_conv": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "onednn": "--xla_cpu_experimental_onednn_custom_call=true",
}


def conv_shapes(width: float, rows: int) -> list[dict]:
  """(name, N, H, W, C_in, C_out, stride) of ResNet-19's distinct 3x3 convolutions, and
  ``count``, how often each occurs in the network (stem 1; 3 blocks of 128: 6; 3 of 256:
  one strided + 5; 2 of 512: one strided + 3)."""
  scale = lambda c: max(1, int(round(c * width)))
  return [dict(name="stem", n=rows, hw=32, cin=3, cout=scale(128), stride=1, count=1),
          dict(name="stage1", n=rows, hw=32, cin=scale(128), cout=scale(128), stride=1, count=6),
          dict(name="stage2_down", n=rows, hw=32, cin=scale(128), cout=scale(256), stride=2,
               count=1),
          dict(name="stage2", n=rows, hw=16, cin=scale(256), cout=scale(256), stride=1, count=5),
          dict(name="stage3_down", n=rows, hw=16, cin=scale(256), cout=scale(512), stride=2,
               count=1),
          dict(name="stage3", n=rows, hw=8, cin=scale(512), cout=scale(512), stride=1, count=3)]


def convs_per_step_seconds(ops: dict, width: float, rows: int) -> float:
  """The 3x3 convolutions of one training step, each timed alone: sum over ResNet-19's
  convolutions of count * (forward + dW + dX), without the stem's dX (the image needs
  no gradient). The two 1x1 shortcut convolutions are not counted."""
  total = 0.0
  for shape in conv_shapes(width, rows):
    op = ops[shape["name"]]
    backward = op["d_weight"] + (0.0 if shape["name"] == "stem" else op["d_input"])
    total += shape["count"] * (op["forward"] + backward)
  return total


def _median_seconds(fn, warmup: int, repeats: int) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    fn()
    times.append(time.perf_counter() - started)
  return statistics.median(times)


def run_jax(args) -> dict:
  """Child process: per-op times and the step time under this process's $XLA_FLAGS."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  results = {"ops": {}}
  for shape in conv_shapes(args.width, args.T * args.batch):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(shape["n"], shape["hw"], shape["hw"], shape["cin"])),
                    jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, shape["cin"], shape["cout"])), jnp.float32)

    def conv(x, w, stride=shape["stride"]):
      return jax.lax.conv_general_dilated(x, w, (stride, stride), ((1, 1), (1, 1)),
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))

    y, pullback = jax.vjp(conv, x, w)
    g = jnp.ones_like(y)
    forward = jax.jit(conv)
    d_input = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0])
    d_weight = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1])
    results["ops"][shape["name"]] = {
        "forward": _median_seconds(lambda: forward(x, w).block_until_ready(), args.warmup,
                                   args.repeats),
        "d_input": _median_seconds(lambda: d_input(x, w, g).block_until_ready(), args.warmup,
                                   args.repeats),
        "d_weight": _median_seconds(lambda: d_weight(x, w, g).block_until_ready(), args.warmup,
                                    args.repeats)}
  results.update(_jax_step(args))
  return results


def _jax_step(args) -> dict:
  """snnjax's training step of ResNet-19: seconds per step, its loss and gradient norms."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from snnjax.train import config as config_lib
  from snnjax.train import steps

  config = config_lib.base_config()
  config.model.update(dict(name="resnet19", T=args.T, width=args.width))
  config.sml.enabled = False
  model = config_lib.build_model(config, num_classes=10)
  tx = optax.sgd(0.0)   # a zero step: every repeat computes the same loss and gradients
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(args.batch, 32, 32, 3)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, args.batch), jnp.int32)}
  state = steps.init_state(model, tx, jax.random.key(0), batch["image"], lipschitz=False)
  step = jax.jit(steps.make_train_step(model, tx, config, lambda s: 0.0))
  started = time.perf_counter()
  new_state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_and_first = time.perf_counter() - started
  seconds = _median_seconds(lambda: jax.block_until_ready(step(state, batch)[1]), args.warmup,
                            args.repeats)
  grads = jax.grad(lambda p: model.apply(
      steps.model_variables(state, p), batch["image"], train=True,
      mutable=["batch_stats"])[0].logits.sum())(state.params)
  return {"step_seconds": seconds, "first_step_seconds": compile_and_first,
          "loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
          "grad_leaves": [np.asarray(g).ravel()[:64].tolist() for g in jax.tree.leaves(grads)]}


def run_torch(args) -> dict:
  """PyTorch (oneDNN) per-op times at the same shapes, NCHW as PyTorch prefers."""
  import torch
  results = {"ops": {}, "torch": torch.__version__, "threads": torch.get_num_threads()}
  torch.manual_seed(0)
  for shape in conv_shapes(args.width, args.T * args.batch):
    x = torch.randn(shape["n"], shape["cin"], shape["hw"], shape["hw"])
    w = torch.randn(shape["cout"], shape["cin"], 3, 3)
    y = torch.nn.functional.conv2d(x, w, stride=shape["stride"], padding=1)
    g = torch.ones_like(y)
    with torch.no_grad():
      results["ops"][shape["name"]] = {
          "forward": _median_seconds(lambda: torch.nn.functional.conv2d(
              x, w, stride=shape["stride"], padding=1), args.warmup, args.repeats),
          "d_input": _median_seconds(lambda: torch.nn.grad.conv2d_input(
              x.shape, w, g, stride=shape["stride"], padding=1), args.warmup, args.repeats),
          "d_weight": _median_seconds(lambda: torch.nn.grad.conv2d_weight(
              x, w.shape, g, stride=shape["stride"], padding=1), args.warmup, args.repeats)}
  return results


def _child(kind: str, flags: str, args) -> dict:
  env = {**os.environ, **common.host_malloc_env(), "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
  command = [sys.executable, __file__, "--child", kind, "--width", str(args.width), "--T",
             str(args.T), "--batch", str(args.batch), "--warmup", str(args.warmup),
             "--repeats", str(args.repeats)]
  done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT,
                        timeout=args.timeout)
  if done.returncode != 0:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return {"error": lines[-1] if lines else f"exit {done.returncode}"}
  return json.loads(done.stdout.strip().splitlines()[-1])


def _agreement(reference: dict, other: dict) -> dict:
  import numpy as np
  leaves = [np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(np.asarray(a)).max() + 1e-12))
            for a, b in zip(reference["grad_leaves"], other["grad_leaves"])]
  return {"loss_difference": abs(reference["loss"] - other["loss"]),
          "grad_norm_relative_difference": abs(reference["grad_norm"] - other["grad_norm"])
          / reference["grad_norm"], "largest_relative_gradient_difference": float(max(leaves))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--width", type=float, default=0.25)
  parser.add_argument("--T", type=int, default=4)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--flag-sets", default=",".join(FLAG_SETS),
                      help=f"comma list from {', '.join(FLAG_SETS)}")
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--timeout", type=int, default=1800)
  parser.add_argument("--out", type=pathlib.Path, default=None)
  parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(run_jax(args) if args.child == "jax" else run_torch(args)))
    return 0
  load = os.getloadavg()
  results = {"config": vars(args) | {"out": str(args.out)}, "load_average_before": load,
             "cpus": os.cpu_count(), "paths": {}}
  for name in args.flag_sets.split(","):
    results["paths"][name] = _child("jax", FLAG_SETS[name], args) | {"flags": FLAG_SETS[name]}
    print(name, {k: v for k, v in results["paths"][name].items() if k != "grad_leaves"},
          flush=True)
  if not args.no_torch:
    results["paths"]["torch"] = _child("torch", "", args)
  reference = results["paths"].get("default", {})
  for name, path in results["paths"].items():
    if name not in ("default", "torch") and "loss" in path and "loss" in reference:
      path["agreement_with_default"] = _agreement(reference, path)
    if "ops" in path:
      path["convs_per_step_seconds"] = convs_per_step_seconds(path["ops"], args.width,
                                                              args.T * args.batch)
    if "step_seconds" in path:
      path["step_over_convs"] = path["step_seconds"] / path["convs_per_step_seconds"]
  results["load_average_after"] = os.getloadavg()
  for path in results["paths"].values():
    path.pop("grad_leaves", None)
  text = json.dumps(results, indent=2)
  print(text)
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
