"""The harnesses' side of `benchmarks/official.py`'s JSON-lines protocol (standard library only).

A harness reads one JSON request a line on stdin and answers one JSON line on the stdout it was
given; everything else the official code prints goes to stderr (stdout is re-pointed there, so
banners and progress lines cannot corrupt the stream). Requests: `{"cmd": "build", "workload":
W, ...}` -> `{"ok": true, "flops": ..., "compile_s": ...}`; `{"cmd": "run", "workload": W, "n":
N}` -> `{"ok": true, "times": [N seconds]}`; `{"cmd": "release", "workload": W}`; `{"cmd":
"quit"}`. A failure answers `{"ok": false, "error": "..."}` and the harness goes on.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def setup_malloc() -> str:
    """The same glibc malloc tuning as our side (`agents.hostmem`), applied before the official
    code allocates: one arena, no mmap for large blocks, no trimming. Returns what was applied."""
    import ctypes
    import ctypes.util

    if os.environ.get("WM_HOST_ALLOCATOR", "tuned") == "default":
        return "default"
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return "default"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = mallopt(-8, 1) and mallopt(-4, 0) and mallopt(-1, 2**31 - 1)
    return "tuned" if ok else "default"


def serve(handlers: dict) -> None:
    """Answer requests until `quit` or end of input; `handlers[cmd](request) -> dict`."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the official code's prints -> stderr
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("cmd") == "quit":
            break
        try:
            answer = {"ok": True, **handlers[request["cmd"]](request)}
        except Exception as e:  # noqa: BLE001 - reported to the driver, which records it
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
    out.close()


def time_calls(call, n: int) -> list[float]:
    """Wall seconds of each of `n` calls of `call()`."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times


def matmul_gflops(matmul, n: int, repeats: int) -> float:
    """Median GFLOP/s of `matmul()` (an n x n by n x n product that blocks until done), after one
    warm-up call."""
    matmul()
    times = sorted(time_calls(matmul, repeats))
    return 2 * n**3 / times[len(times) // 2] / 1e9


class Harness:
    """What both harnesses share: the built workloads by name (`self.work`, each a call that
    blocks until its result is ready), `run` (time `n` calls of one), `release` (drop one), and
    `serve`. A harness adds `build` and `info`, and may override `prepare` (called before a
    `run` times anything)."""

    def __init__(self):
        self.work = {}

    def prepare(self, req: dict) -> None:
        pass

    def run(self, req: dict) -> dict:
        self.prepare(req)
        return {"times": time_calls(self.work[req["workload"]], req["n"])}

    def release(self, req: dict) -> dict:
        import gc

        self.work.pop(req["workload"], None)
        gc.collect()
        return {}

    def serve(self) -> None:
        serve({"build": self.build, "run": self.run, "release": self.release, "info": self.info})
