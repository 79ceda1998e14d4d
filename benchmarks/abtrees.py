"""What the paired A/B scripts (`ab_update.py`, `ab_compile.py`) share: temporary `git worktree`s
of the refs compared, and the start of a child process that must import one tree only.

Standard library only at import time; each child imports its tree's `agents` after `child_start`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktrees(*refs: str):
    """Yield one detached `git worktree` path per ref, in a temporary folder; removed on exit."""
    git = ["git", "-C", str(ROOT)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        try:
            for i, ref in enumerate(refs):
                path = Path(tmp) / f"tree{i}"
                add = [*git, "worktree", "add", "-q", "--detach", str(path), ref]
                subprocess.run(add, check=True)
                paths.append(path)
            yield paths
        finally:
            for path in paths:
                subprocess.run([*git, "worktree", "remove", "--force", str(path)], check=False)


def child_start(tune_allocator: bool) -> None:
    """First thing in a child process: import only the tree on `PYTHONPATH` (an editable install's
    finder would otherwise serve modules an older tree lacks from the installed checkout), and
    tune the host allocator if asked, as `wm` does for Dreamer (`agents.hostmem`; trees from
    before 2026-11-30 have no tuning and run without it). Call before JAX's first computation."""
    sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    if not tune_allocator:
        return
    try:
        from agents.hostmem import tune_host_allocator
    except ImportError:
        return
    tune_host_allocator()


def init_agent(agent, key, spec):
    """`agent.init(key)`, or `agent.init(key, spec)` on trees whose init still takes the spec."""
    try:
        return agent.init(key)
    except TypeError:
        return agent.init(key, spec)
