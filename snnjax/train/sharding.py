"""Device mesh and shardings: the global batch on the data axis, parameters replicated or FSDP.

One ``jax.sharding.Mesh`` spans every device of every process, with a single
axis ``"data"``. The global batch is split along it; each process feeds only
its own rows (``jax.make_array_from_process_local_data``). Parameters are
replicated, or with ``fsdp=True`` each large parameter is split along its
largest axis divisible by the device count (ZeRO-3 style: XLA gathers it for
the computation). BatchNorm statistics are computed over the global batch
because the step is one SPMD program over the whole mesh.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_batch_divides(global_batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over devices and processes."""
  devices = mesh.devices.size
  if global_batch_size % devices:
    raise ValueError(
        f"batch_size={global_batch_size} is not divisible by the {devices} devices; "
        f"use a multiple of {devices}, e.g. --config.batch_size="
        f"{max(devices, global_batch_size // devices * devices)}.")
  if global_batch_size % jax.process_count():
    raise ValueError(f"batch_size={global_batch_size} is not divisible by the "
                     f"{jax.process_count()} processes.")


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def fsdp_spec(shape: tuple[int, ...], num_devices: int, min_size: int) -> P:
  """Split the largest axis divisible by ``num_devices``, for arrays of >= min_size elements."""
  if int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] % num_devices == 0:
      return P(*([None] * axis), DATA_AXIS)
  return P()


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp: bool = False,
                    fsdp_min_size: int = 2**18) -> Any:
  """Shardings for a train state: replicated, or FSDP for large array leaves."""
  def sharding(leaf):
    if fsdp and hasattr(leaf, "shape"):
      return NamedSharding(mesh, fsdp_spec(tuple(leaf.shape), mesh.devices.size, fsdp_min_size))
    return replicated(mesh)
  return jax.tree.map(sharding, abstract_state)


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows -> global arrays sharded on the data axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
