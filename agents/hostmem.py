"""Host-memory allocator settings for XLA:CPU processes (glibc's malloc).

XLA:CPU allocates each call's temporaries as one buffer (311 MB for a DreamerV3 `size1m` update)
from one of its worker threads. glibc cannot place a request that large in a thread's arena
(64 MB heaps), so it maps fresh pages for it and unmaps them when the call returns: every call
page-faults its whole working set back in (76-160 thousand faults per `size1m` update, measured
with `resource.getrusage`). With one arena, no `mmap` for large requests and no trimming, the
freed buffer stays in the heap and the next call reuses it: no faults, 13-24% off a Dreamer
update on a 2-core CPU. The price: the process keeps its peak host memory until it exits (it
does not hand freed memory back to the OS), which a training or benchmark process does anyway.

It is not free for every program: with one arena, XLA's threads contend for the heap's lock,
and a TD-MPC2 train chunk at `wm train` defaults (many small buffers a step) ran at 49.6 env
steps/s tuned against 110 with glibc's defaults, and compiled slower too (44-49 s against 39 s),
paired on a 2-core Zen 4 (`benchmarks/ab_compile.py`). So each agent config says whether it wants
the tuning (`tune_host_allocator` class attribute: Dreamer yes, TD-MPC2 no), and `wm` applies it
after parsing the command line, before JAX starts its CPU threads. A library user may call it
first thing in their own script. `WM_HOST_ALLOCATOR=default` opts out. Elsewhere than glibc
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_applied: bool | None = None


def tune_host_allocator() -> bool:
    """Make glibc keep and reuse freed host memory; call before JAX's first computation.

    Sets one malloc arena (so XLA's worker threads allocate from the main heap, which has no
    size limit), no `mmap` for large requests, and a trim threshold of 2 GiB (freed memory
    below that is never returned). Threads that allocated before the call keep their own
    arenas, so call it before the first JAX operation (importing `jax` is fine).

    Returns:
      Whether the settings were applied (False with `WM_HOST_ALLOCATOR=default` or without
      glibc). Idempotent.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("WM_HOST_ALLOCATOR", "tuned") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0)
    _applied = bool(ok and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def host_allocator() -> str:
    """`"tuned"` once `tune_host_allocator()` applied its settings, else `"default"`."""
    return "tuned" if _applied else "default"
