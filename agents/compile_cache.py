"""The persistent XLA compilation cache that `wm` and `agents.run.run_training` share.

A second run of the same config (a resume, an eval, the same command again) loads its compiled
programs from disk instead of compiling them again: minutes saved on a CPU.
"""

from __future__ import annotations

import os

DEFAULT_DIR = "~/.cache/worldmodels/jax"


def enable_compile_cache() -> str | None:
    """Turns on JAX's persistent compilation cache; returns its directory (None: off).

    The directory is `$WM_JAX_CACHE` (default `~/.cache/worldmodels/jax`; set it to "" to turn
    the cache off), unless `jax_compilation_cache_dir` is set already (by you, or a test
    session): that one is kept. Call it before the first compile; it imports JAX.
    """
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = os.environ.get("WM_JAX_CACHE", os.path.expanduser(DEFAULT_DIR))
    if not path:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path
