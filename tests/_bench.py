"""A script of `benchmarks/` loaded as a module (`benchmarks/` is a folder of scripts, not a
package); the tests beside this file import it as `from _bench import load_benchmark`."""

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str, path: Path | None = None):
    """`benchmarks/<name>.py` (or `path`) as a module named `name`."""
    spec = importlib.util.spec_from_file_location(name, path or BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
