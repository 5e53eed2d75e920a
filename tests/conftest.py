"""Test setup: 8 simulated CPU devices, so sharding is tested on real meshes."""

import os

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
