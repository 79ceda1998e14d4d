"""Test-wide JAX settings: strict rank promotion, several virtual CPU devices, fresh keys."""

import atexit
import contextlib
import os
import shutil
import tempfile
import zlib

# Several virtual CPU devices so sharded code paths run on a CPU-only machine, and LLVM's cheapest
# code generation: most of the suite's time is XLA compiling small programs that then run for
# milliseconds, and level 0 compiles them about 30% faster (the HLO passes, hence the maths, are
# the same; the code runs slower). The learning test runs in its own process at the default
# level (tests/agents/test_learning.py). Must be set before JAX initialises its backends.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Tests rebuild the same jitted programs (train, resume, eval of one config): a persistent
# compilation cache, fresh for each session, compiles each of them once. One directory for the
# whole session: the process that imports this first (pytest's, or xdist's controller) makes it
# and exports it as JAX_COMPILATION_CACHE_DIR, which xdist's workers and the tests' child
# processes (README blocks, notebook, benchmarks) inherit, so a program compiled by one worker
# serves the other. Only its maker removes it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="wm-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
_CACHE_DIR = os.environ["JAX_COMPILATION_CACHE_DIR"]
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# The longest files first: xdist hands whole files to its two workers in this order (pyproject's
# `--no-loadscope-reorder`; xdist's default sends files with the most tests first, which put the
# one-test learning file last and left one worker running it alone for minutes at the end).
_LONG_FILES = ("test_learning.py", "test_readme.py", "test_dreamer.py", "test_train.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return _LONG_FILES.index(name) if name in _LONG_FILES else len(_LONG_FILES)

    items.sort(key=rank)  # stable: each file's tests stay together and in order


@pytest.fixture
def default_codegen_env():
    """Environment for a child process that runs long (a training run, the README's blocks): the
    suite's, less its LLVM level-0 flag, which compiles faster but runs several times slower."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "optimization_level" not in f]
    return {**os.environ, "XLA_FLAGS": " ".join(flags)}


@pytest.fixture
def key(request):
    """A fresh typed key per test, derived from the test's name so failures reproduce."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return jax.random.key(seed)


@contextlib.contextmanager
def _count_compiles():
    """Collects jit cache misses (traces and XLA compiles) that happen inside the block."""
    events = []
    names = {"/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/backend_compile_duration"}

    def listener(name, duration, **kwargs):
        if name in names:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def count_compiles():
    """`with count_compiles() as events: ...` then `assert events == []` proves no recompile."""
    return _count_compiles
