"""Package-level promises: import boundaries, public examples, lint."""

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

import worldmodels

ROOT = Path(__file__).resolve().parents[1]


def test_import_worldmodels_pulls_in_jax_flax_optax_only():
    code = (
        "import sys, worldmodels; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('brax', 'agents', 'mujoco', 'orbax', 'tyro', 'matplotlib')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pinned_dependency_is_imported():
    """pyproject's dependencies are the packages the code imports (jaxlib is jax's runtime)."""
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    modules = {"orbax-checkpoint": "orbax", "tensorboardx": "tensorboardX", "pillow": "PIL"}
    source = "\n".join(
        p.read_text() for d in ("worldmodels", "agents") for p in (ROOT / d).rglob("*.py")
    )
    for dep in deps:
        name = re.split(r"[=<>\[ ]", dep)[0].lower()
        if name == "jaxlib":
            continue
        module = modules.get(name, name)
        assert re.search(rf"^\s*(import|from) {module}\b", source, re.M), f"{dep} is not imported"


def test_public_names_exist():
    import agents

    for name in worldmodels.__all__:
        assert hasattr(worldmodels, name), name
    for name in agents.__all__:
        assert getattr(agents, name) is not None, name


@pytest.mark.parametrize(
    "module",
    [
        "worldmodels",
        "worldmodels.backend",
        "worldmodels.nets",
        "worldmodels.nets.conv",
        "worldmodels.nets.core",
        "worldmodels.nets.gru",
        "worldmodels.tdmpc",
        "worldmodels.planning",
        "worldmodels.model_step",
        "worldmodels.planner_configs",
        "worldmodels.returns",
        "worldmodels.rssm",
        "worldmodels.rssm_config",
        "worldmodels.rssm_loss",
        "worldmodels.rssm_obs",
        "worldmodels.scan",
        "worldmodels.sequence",
        "agents",
        "agents.actor_critic",
        "agents.checkpoint",
        "agents.config",
        "agents.dreamer",
        "agents.envs",
        "agents.render",
        "agents.replay",
        "agents.tdmpc2",
        "agents.wrappers",
    ],
)
def test_docstring_examples_run(module):
    mod = __import__(module, fromlist=["_"])
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_ruff_lint_is_clean():
    paths = [str(ROOT / p) for p in ("worldmodels", "agents", "benchmarks", "tests")]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *paths], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
