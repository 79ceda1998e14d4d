"""The official implementations' Python environments: one venv each, built from their own pins.

Imported by `benchmarks/official.py` (it needs nothing but the standard library). A venv is built
once in `<cache>/<name>-<hash of the pins>/` and reused while its marker file `pins.json` holds
the same pins; `pip freeze` of the finished venv is kept beside it (`freeze.txt`) and quoted in
the results.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

# What each official code pins for itself, reduced to what importing and running its agent needs
# (no simulators, loggers or GPU libraries: the harness builds the agent on random data).
ENVS = {
    "tdmpc2": {
        # tdmpc2/docker/environment.yaml: python 3.11, torch 2.7.1, tensordict 0.8.3,
        # hydra-core 1.3.2, omegaconf 2.3.0, numpy 1.24.4, termcolor 2.4.0. The agent class
        # imports neither gym, mujoco, dm_control nor torchrl (only common/buffer.py does).
        "python": "3.11",
        "torch": "torch==2.7.1",
        "packages": [
            "tensordict==0.8.3",
            "hydra-core==1.3.2",
            "omegaconf==2.3.0",
            "numpy==1.24.4",
            "termcolor==2.4.0",
        ],
    },
    "dreamerv3": {
        # dreamerv3/requirements.txt with jax[cuda12]==0.4.33 as jax[cpu]==0.4.33, less the
        # environments (ale_py, autorom), video (av), debugging (ipdb, colored_traceback), cloud
        # storage (google-resumable-media) and CUDA (nvidia-cuda-nvcc-cu12); ruamel.yaml reads
        # its configs.yaml as its main.py does.
        "python": "3.11",
        "packages": [
            "jax[cpu]==0.4.33",
            "jaxlib==0.4.33",
            "chex",
            "einops",
            "elements>=3.19.1",
            "granular>=0.20.3",
            "jaxtyping",
            "ninjax>=3.5.1",
            "numpy<2",
            "optax",
            "portal>=3.5.0",
            "scope>=0.4.4",
            "tqdm",
            "ruamel.yaml",
        ],
    },
}
# PyTorch's CPU-only wheels; where that index cannot be reached the PyPI wheel is installed
# without its CUDA dependencies (nvidia-*, triton), which a CPU run never loads.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CPU_DEPS = [
    "filelock",
    "typing-extensions>=4.10.0",
    "sympy>=1.13.3",
    "networkx",
    "jinja2",
    "fsspec",
]


def pins(name: str) -> dict:
    return {"name": name, **ENVS[name]}


def venv_dir(name: str, cache: Path) -> Path:
    digest = hashlib.sha256(json.dumps(pins(name), sort_keys=True).encode()).hexdigest()[:10]
    return cache / f"{name}-{digest}"


def python_of(name: str, cache: Path) -> Path:
    return venv_dir(name, cache) / "bin" / "python"


def find_python(version: str) -> str:
    for exe in (f"python{version}", "python3", "python"):
        path = shutil.which(exe)
        if path is None:
            continue
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if out.stdout.strip() == version:
            return path
    raise RuntimeError(f"no python{version} on PATH (the official pins need Python {version})")


def ensure(name: str, cache: Path, log=print) -> dict:
    """Build (once) and describe the venv for `name`: `{"python", "dir", "freeze", "notes"}`."""
    target = venv_dir(name, cache)
    marker = target / "pins.json"
    if marker.exists() and json.loads(marker.read_text()).get("pins") == pins(name):
        info = json.loads(marker.read_text())
        info["freeze"] = (target / "freeze.txt").read_text().split()
        return info
    if target.exists():
        shutil.rmtree(target)
    spec = ENVS[name]
    log(f"building the {name} environment in {target} (once)")
    subprocess.run([find_python(spec["python"]), "-m", "venv", str(target)], check=True)
    py = str(target / "bin" / "python")
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    notes = []
    if "torch" in spec:
        cpu = subprocess.run(
            [
                *pip,
                spec["torch"],
                "--index-url",
                TORCH_CPU_INDEX,
                "--timeout",
                "20",
                "--retries",
                "0",
            ],
            capture_output=True,
            text=True,
        )
        if cpu.returncode == 0:
            notes.append(f"{spec['torch']} from {TORCH_CPU_INDEX}")
        else:
            log("  the CPU wheel index cannot be reached: PyPI's wheel without CUDA libraries")
            subprocess.run([*pip, "--no-deps", spec["torch"]], check=True)
            subprocess.run([*pip, *TORCH_CPU_DEPS], check=True)
            notes.append(
                f"{spec['torch']} from PyPI installed --no-deps (its CUDA libraries left out; "
                f"{TORCH_CPU_INDEX} was not reachable)"
            )
    subprocess.run([*pip, *spec["packages"]], check=True)
    check = "import torch, tensordict" if "torch" in spec else "import jax, ninjax, elements"
    subprocess.run([py, "-c", check], check=True)
    freeze = subprocess.run([py, "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    (target / "freeze.txt").write_text(freeze.stdout)
    info = {"pins": pins(name), "python": py, "dir": str(target), "notes": notes}
    marker.write_text(json.dumps(info, indent=2) + "\n")
    info["freeze"] = freeze.stdout.split()
    return info


if __name__ == "__main__":  # python benchmarks/official/envs.py CACHE [NAME ...]
    cache = Path(sys.argv[1]).expanduser()
    for n in sys.argv[2:] or list(ENVS):
        print(json.dumps({k: v for k, v in ensure(n, cache).items() if k != "freeze"}))
