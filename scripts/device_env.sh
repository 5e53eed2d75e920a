# Sourced by the device scripts (scripts/gpu_*.sh): makes this checkout runnable on a lent
# machine's own Python, which has JAX but not snnjax installed and cannot reach a registry.
#
# - puts the checkout on PYTHONPATH (benchmarks/*.py and their children import snnjax);
# - installs the wheels in $DEVICE_WHEELS (default .whl/, from scripts/device_wheels.sh,
#   carried) into $DEVICE_SITE (default /tmp/site), if there are any;
# - checks that train.py's imports load, naming what is missing in one line (exit 2), before
#   any device time goes into a run that cannot start;
# - says what it runs on: Python, JAX, and JAX's devices.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONUNBUFFERED=1
DEVICE_WHEELS=${DEVICE_WHEELS:-$REPO/.whl}
if compgen -G "$DEVICE_WHEELS/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "${DEVICE_SITE:=/tmp/site}" "$DEVICE_WHEELS"/*.whl || exit 2
  export PYTHONPATH=$DEVICE_SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
fi
python3 - <<'PY' || exit 2
import importlib, sys
missing = []
for name in ("jax", "flax", "optax", "orbax.checkpoint", "chex", "grain", "ml_collections",
             "tensorboardX", "snnjax.train.loop"):
  try:
    importlib.import_module(name)
  except ImportError as e:
    missing.append(f"{name} ({e})")
if missing:
  sys.exit("device_env.sh: cannot import " + "; ".join(missing)
           + ": run 'bash scripts/device_wheels.sh' here and carry .whl")
import jax
print(f"python {sys.version.split()[0]}, jax {jax.__version__}, devices {jax.devices()}")
PY
