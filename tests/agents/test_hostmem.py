"""The host allocator settings: freed large buffers are reused instead of page-faulted back in."""

import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, resource, sys, threading
from agents.hostmem import tune_host_allocator
applied = tune_host_allocator()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size, faults = 64 << 20, []

def work():  # as XLA does: a large temporary, from a worker thread, once per call
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

t = threading.Thread(target=work)
t.start(); t.join()
print(applied, faults[-1])
"""


def _probe(env_value):
    env = dict(os.environ, WM_HOST_ALLOCATOR=env_value)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_tuned_allocator_reuses_large_freed_buffers():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    applied, tuned = _probe("tuned")
    assert applied
    assert tuned < pages // 20, tuned  # the third 64 MiB buffer reuses the first's pages
    applied, default = _probe("default")  # the opt-out keeps glibc's way: fresh pages each time
    assert not applied
    assert default > tuned, (default, tuned)  # (fewer than `pages` faults with huge pages)
