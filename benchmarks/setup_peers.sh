#!/usr/bin/env bash
# Installs the peer frameworks the benchmarks compare against (CPU machine, PyPI only).
#
#   snnTorch       into the project's venv (.venv): pure Python, no dependencies beyond torch.
#   SpikingJelly   into .venv as well, without its multi-GB torchvision / torchaudio
#                  dependencies (DESIGN.md's recipe); skipped when already installed.
#   Spyx           into its own venv, benchmarks/.venv-spyx (git-ignored): Spyx 1.0 pulls
#                  its own jax / jaxlib / flax / optax (~0.8 GB), kept apart from snnjax's.
#
# Usage: bash benchmarks/setup_peers.sh        (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PY=.venv/bin/python
SPYX_VENV=benchmarks/.venv-spyx

"$VENV_PY" -m pip install "snntorch==1.0.0"
"$VENV_PY" -c "import spikingjelly" 2>/dev/null || \
  "$VENV_PY" -m pip install --no-deps "spikingjelly==2.0.0" loguru tqdm scipy

if [ ! -x "$SPYX_VENV/bin/python" ]; then
  python3 -m venv "$SPYX_VENV"
fi
"$SPYX_VENV/bin/python" -m pip install "spyx==1.0.0"
"$SPYX_VENV/bin/python" -c "import spyx, jax; print('spyx', spyx.__version__, 'jax', jax.__version__)"
