#!/bin/bash
# Downloads, on this machine, the wheels a lent GPU machine lacks, into .whl/ (git-ignored).
#
# The device image (Python 3.12) already holds jax, flax, optax, orbax-checkpoint, chex, etils,
# numpy, matplotlib, h5py, torch, ...; it cannot reach a package registry. What snnjax's train
# path, the benchmark children and SpikingJelly import beyond that is fetched here, each at the
# version this checkout's .venv runs, and travels with the working tree (name .whl in the run
# tool's carry). scripts/device_env.sh installs them there.
#
#   bash scripts/device_wheels.sh            # then carry .whl (and data/fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
# pyproject's dependencies that the device image holds (its package list, 2026-11-17) ...
ON_DEVICE_IMAGE=(jax flax optax orbax-checkpoint chex numpy tqdm absl-py etils pillow matplotlib)
# ... that the device scripts never import (tensorflow_datasets is imported only for tfds sources) ...
NOT_NEEDED_ON_DEVICE=(tensorflow-datasets)
# ... and what is fetched: snnjax's other needs and theirs, then SpikingJelly's.
PACKAGES=(grain array-record portpicker ml_collections tensorboardX nir spikingjelly loguru)

version_here() { "$PYTHON" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }

mkdir -p .whl
for name in "${PACKAGES[@]}"; do
  version=$(version_here "$name")
  if [ -z "$version" ]; then
    echo "device_wheels.sh: $name is not installed in $PYTHON's environment; run 'bash setup.sh dev' first" >&2
    exit 2
  fi
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d .whl "$name==$version"
done
ls -1 .whl
du -sh .whl
