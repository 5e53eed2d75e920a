"""Test setup: 8 simulated CPU devices, so sharding is tested on real meshes, and the XLA
flags snnjax's entry points set (snnjax.xla_flags), so tests run the path users run."""

import os

from snnjax import xla_flags

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
xla_flags.apply()
