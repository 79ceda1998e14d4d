"""Test-wide JAX settings: strict rank promotion, several virtual CPU devices, fresh keys."""

import os
import zlib

# Several virtual CPU devices so sharded code paths run on a CPU-only machine. Must be set before
# JAX initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key(request):
    """A fresh typed key per test, derived from the test's name so failures reproduce."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return jax.random.key(seed)
