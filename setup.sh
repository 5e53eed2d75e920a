#!/usr/bin/env bash
# Sets up this checkout on a fresh Debian machine:
#   bash setup.sh        Debian's Fashion-MNIST + .venv with snnjax: every command of the
#                        README (training, evaluation, probes and their plots)
#   bash setup.sh dev    the same, plus test tools and the peer frameworks the tests
#                        compare against (PyTorch CPU, SpikingJelly, snnTorch's NIR import)
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq dataset-fashion-mnist
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
if [ "${1:-}" = dev ]; then
  pip install -e ".[dev]"
  pip install torch==2.13.0
  pip install --no-deps spikingjelly loguru tqdm scipy
  pip install --no-deps snntorch==1.0.0 nirtorch==2.6
else
  pip install -e .
fi
