"""Losses: cross-entropy, TET, Surrogate Module Learning, Lipschitz penalty.

Every loss is a pure function returning a float32 scalar, computed in float32
whatever the dtype of the logits (bf16 logits are upcast first). Logits are
[B, C] (batch, classes); per-time-step logits are time-major [T, B, C]; labels
are integer class indices [B].

    loss = sml_loss(out.logits, out.aux_logits, labels, alpha=0.5, lam=0.9, temperature=3.0)
    lip_state = lipschitz_init(params, key)
    penalty, lip_state = lipschitz_penalty(params, lip_state)   # loss += beta_lr * penalty
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

Array = jax.Array
PyTree = Any


def _check_labels(logits: Array, labels: Array, what: str = "logits") -> None:
  if logits.ndim < 1 or tuple(labels.shape) != tuple(logits.shape[:-1]):
    raise ValueError(
        f"{what} of shape {tuple(logits.shape)} need integer labels of shape "
        f"{tuple(logits.shape[:-1])}, got labels of shape {tuple(labels.shape)}.")


def cross_entropy(logits: Array, labels: Array) -> Array:
  """Softmax cross-entropy with integer labels, averaged over the batch.

  CE = mean_b [ logsumexp_k z_bk - z_b,y_b ], computed in float32.

  Args:
    logits: [B, C] (any leading axes are averaged over like B).
    labels: integer class indices with logits' leading shape, [B].
  """
  _check_labels(logits, labels)
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_p, labels[..., None].astype(jnp.int32), axis=-1)
  return -jnp.mean(picked)


def accuracy(logits: Array, labels: Array) -> Array:
  """Fraction of rows whose arg-max class equals the label, a float32 scalar in [0, 1]."""
  _check_labels(logits, labels)
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def kl_divergence(teacher_logits: Array, student_logits: Array, temperature: float = 1.0) -> Array:
  """KL(teacher -> student) = mean_b sum_k p_t,bk (log p_t,bk - log p_s,bk).

  p = softmax(logits / temperature), computed in float32; no temperature^2
  factor. Gradients flow into both arguments: stop the teacher's gradient at
  the call site where that is wanted.

  Args:
    teacher_logits, student_logits: [B, C] each.
    temperature: distillation temperature T_dis > 0.
  """
  if tuple(teacher_logits.shape) != tuple(student_logits.shape):
    raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                     f"{tuple(student_logits.shape)} must have the same shape.")
  log_pt = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
  log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
  per_example = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1)
  return jnp.mean(per_example)


def tet_loss(logits_seq: Array, labels: Array, lam: float = 1e-3, phi: float = 1.0) -> Array:
  """Temporal efficient training loss on per-step outputs.

  From "Temporal Efficient Training of Spiking Neural Network via Gradient
  Re-weighting" (Deng et al., ICLR 2022), with o_t the logits at step t:

      L = (1 - lam) * (1/T) sum_t CE(o_t, y) + lam * (1/T) sum_t MSE(o_t, phi)

  MSE(o_t, phi) = mean_{b,k} (o_t,bk - phi)^2. The paper sets phi = V_th; the
  defaults lam = 1e-3 and phi = 1.0 are those of the authors' released code.

  Args:
    logits_seq: per-step logits [T, B, C], not averaged over T.
    labels: integer class indices [B].
    lam: weight of the MSE regulariser in [0, 1]; 0 gives the plain TET term.
    phi: target value of every output (the threshold V_th).
  """
  if logits_seq.ndim != 3:
    raise ValueError(
        f"tet_loss needs per-step logits [T, B, C], got shape {tuple(logits_seq.shape)}.")
  _check_labels(logits_seq[0], labels)
  z = logits_seq.astype(jnp.float32)
  ce = cross_entropy(z, jnp.broadcast_to(labels, z.shape[:-1]))
  mse = jnp.mean(jnp.square(z - phi))
  return (1 - lam) * ce + lam * mse


def sml_loss_parts(logits: Array, aux_logits: Sequence[Array], labels: Array, alpha: float = 0.5,
                   lam: float = 0.9, temperature: float = 3.0, beta1: float = 1.0,
                   beta2: float = 1.0) -> dict[str, Array]:
  """Surrogate Module Learning loss and its parts, for logging.

  From "Surrogate Module Learning: Reduce the Gradient Error Accumulation in
  Training Spiking Neural Networks" (Deng et al., ICML 2023). With y_c the SNN
  logits, y_i the logits of surrogate module i (N of them), sg = stop_gradient
  and KL as in :func:`kl_divergence` at temperature T_dis:

      L_C     = (CE(y_c) + alpha * sum_i CE(y_i)) / (1 + N alpha)
      KL_i    = beta1 KL(sg(y_i) -> y_c) + beta2 KL(sg(y_c) -> y_i)
      L_total = (1 - lam) L_C + lam / (2N) sum_i KL_i

  With N = 0 (no heads, e.g. at evaluation) L_total = CE(y_c) exactly; ``lam``
  is then ignored.

  Args:
    logits: y_c, [B, C].
    aux_logits: a tuple/list of N head logits, each [B, C]; may be empty.
    labels: integer class indices [B].
    alpha: weight of each head's CE within L_C.
    lam: weight of the distillation term, in [0, 1].
    temperature: T_dis > 0.
    beta1, beta2: weights of the head -> SNN and SNN -> head KL directions.

  Returns:
    {"loss": L_total, "ce_main": CE(y_c), "ce_heads": [N] CE(y_i),
     "kl": [N] KL_i}, all float32 (``ce_heads`` and ``kl`` have shape [0] when N = 0).
  """
  heads = tuple(aux_logits)
  for i, y_i in enumerate(heads):
    if tuple(y_i.shape) != tuple(logits.shape):
      raise ValueError(f"aux_logits[{i}] has shape {tuple(y_i.shape)}; every head must match "
                       f"the SNN logits' shape {tuple(logits.shape)}.")
  ce_main = cross_entropy(logits, labels)
  n = len(heads)
  if n == 0:
    empty = jnp.zeros((0,), jnp.float32)
    return {"loss": ce_main, "ce_main": ce_main, "ce_heads": empty, "kl": empty}
  sg = jax.lax.stop_gradient
  ce_heads = jnp.stack([cross_entropy(y_i, labels) for y_i in heads])
  kl = jnp.stack([
      beta1 * kl_divergence(sg(y_i), logits, temperature)
      + beta2 * kl_divergence(sg(logits), y_i, temperature) for y_i in heads
  ])
  loss_c = (ce_main + alpha * jnp.sum(ce_heads)) / (1 + n * alpha)
  loss = (1 - lam) * loss_c + lam / (2 * n) * jnp.sum(kl)
  return {"loss": loss, "ce_main": ce_main, "ce_heads": ce_heads, "kl": kl}


def sml_loss(logits: Array, aux_logits: Sequence[Array], labels: Array, alpha: float = 0.5,
             lam: float = 0.9, temperature: float = 3.0, beta1: float = 1.0,
             beta2: float = 1.0) -> Array:
  """The scalar L_total of :func:`sml_loss_parts` (same arguments and formula)."""
  return sml_loss_parts(logits, aux_logits, labels, alpha=alpha, lam=lam,
                        temperature=temperature, beta1=beta1, beta2=beta2)["loss"]


# ---------------------------------------------------------------------------
# Lipschitz penalty: sum of squared spectral norms by power iteration.


def _kernels(params: PyTree) -> dict[tuple[str, ...], Array]:
  """{path: leaf} for every leaf named "kernel" with ndim >= 2 (conv and dense weights)."""
  flat = traverse_util.flatten_dict(params)
  return {path: leaf for path, leaf in sorted(flat.items())
          if path[-1] == "kernel" and jnp.ndim(leaf) >= 2}


def kernel_matrix(kernel: Array) -> Array:
  """A kernel as the float32 matrix whose spectral norm is penalised.

  Dense [C_in, C_out] is taken as is; conv [kh, kw, C_in, C_out] is reshaped to
  [kh*kw*C_in, C_out], the cheap choice of "Spectral Normalization for
  Generative Adversarial Networks" (Miyato et al., ICLR 2018). snnjax's choice:
  this matrix is a proxy for the convolution's operator norm, which also
  depends on the feature-map size, stride and padding.
  """
  return kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)


def _normalize(x: Array, fallback: Array) -> Array:
  norm = jnp.linalg.norm(x)
  return jnp.where(norm > 0, x / jnp.where(norm > 0, norm, 1), fallback)


def _spectral_norm(w: Array, v: Array, n_iter: int) -> tuple[Array, Array]:
  """sigma = u^T W v after n_iter power steps; u, v carry no gradient, so d sigma / dW = u v^T."""
  w_fixed = jax.lax.stop_gradient(w)

  def step(_, v):
    u = _normalize(w_fixed @ v, jnp.zeros(w.shape[0], w.dtype))
    return _normalize(w_fixed.T @ u, v)

  v = jax.lax.stop_gradient(jax.lax.fori_loop(0, n_iter, step, v))
  u = jax.lax.stop_gradient(_normalize(w_fixed @ v, jnp.zeros(w.shape[0], w.dtype)))
  return u @ (w @ v), v


def lipschitz_init(params: PyTree, key: Array) -> dict:
  """Power-iteration state: one random unit vector v [C_out] per kernel.

  Returns a nested dict keyed like ``params`` that holds only the kernels'
  paths (leaves named "kernel" with ndim >= 2), e.g.
  ``{"Conv_0": {"kernel": v}}``; v is float32.
  """
  kernels = _kernels(params)
  keys = jax.random.split(key, max(len(kernels), 1))
  state = {}
  for k, (path, kernel) in zip(keys, kernels.items()):
    v = jax.random.normal(k, (kernel.shape[-1],), jnp.float32)
    state[path] = v / jnp.linalg.norm(v)
  return traverse_util.unflatten_dict(state)


def spectral_norms(params: PyTree, state: PyTree, n_iter: int = 1) -> tuple[dict, dict]:
  """Estimates sigma_max of every kernel matrix (see :func:`kernel_matrix`).

  Runs ``n_iter`` power-iteration steps v <- W^T W v / ||W^T W v|| from the
  carried vectors, then sigma = u^T W v with u = W v / ||W v||. The estimate
  never exceeds the true sigma_max and converges to it as the state is carried
  from step to step; u and v are stop-gradient, so d sigma / d W = u v^T.

  Args:
    params: a parameter pytree (nested dicts).
    state: from :func:`lipschitz_init` or a previous call.
    n_iter: power steps per call, a Python int >= 0.

  Returns:
    (sigmas, new_state): both nested dicts keyed like ``state``; sigmas are
    float32 scalars.
  """
  if not isinstance(n_iter, int) or n_iter < 0:
    raise ValueError(f"n_iter must be a Python int >= 0, got {n_iter!r}.")
  kernels = _kernels(params)
  vectors = traverse_util.flatten_dict(state) if state else {}
  if set(vectors) != set(kernels):
    missing = sorted("/".join(p) for p in set(kernels) - set(vectors))
    extra = sorted("/".join(p) for p in set(vectors) - set(kernels))
    raise ValueError(
        f"Lipschitz state does not match the parameters: kernels without a vector {missing}, "
        f"vectors without a kernel {extra}; rebuild it with lipschitz_init.")
  sigmas, new_state = {}, {}
  for path, kernel in kernels.items():
    sigmas[path], new_state[path] = _spectral_norm(kernel_matrix(kernel), vectors[path], n_iter)
  return traverse_util.unflatten_dict(sigmas), traverse_util.unflatten_dict(new_state)


def lipschitz_penalty(params: PyTree, state: PyTree, n_iter: int = 1) -> tuple[Array, dict]:
  """P = sum_l sigma_max(W_l)^2 over conv/dense kernels, and the new power-iteration state.

  snnjax's choice for the Lipschitz regularisation of "Surrogate gradient
  scaling for directly training spiking neural networks" (Chen et al., Applied
  Intelligence 2023), whose exact term is not public: add ``beta_lr * P`` to
  the loss (P excludes beta_lr). dP / dW_l = 2 sigma_l u_l v_l^T, reshaped to
  the kernel's shape. See :func:`spectral_norms` for the arguments.
  """
  sigmas, new_state = spectral_norms(params, state, n_iter)
  penalty = sum((jnp.square(s) for s in jax.tree.leaves(sigmas)), jnp.zeros((), jnp.float32))
  return penalty, new_state
