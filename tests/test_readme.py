"""Every Python block of README.md runs as written: in order, in one fresh process (later blocks
use what earlier ones built, as a reader following the manual would), in an empty directory. The
training notebook (examples/) is checked by the default suite (no stored outputs, every name it
imports exists) and run cell by cell by a slow test (`-m slow`): it trains, resumes, evaluates and
records a video, about 13 minutes of a 2-core CI run, more than half the suite's budget."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NOTEBOOK = README.parent / "examples" / "train_from_python.ipynb"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_readme_has_python_blocks_for_each_part_of_the_manual():
    text = "\n".join(_blocks())
    for used in ("wm.mppi", "make_tdmpc_model", "run_training", "load_run", "wrap_env", "make_env"):
        assert used in text, used


def test_every_python_block_of_the_readme_runs(tmp_path, default_codegen_env):
    # XLA's default LLVM level: at the suite's level 0 the training block's one train chunk ran
    # 130 s and its evaluation 73 s (2 cores), against 12 s for the chunk at `wm train`'s speed.
    blocks = _blocks()
    script = "\n".join(
        f"print('--- README block {i + 1} of {len(blocks)}', flush=True)\n{b}"
        for i, b in enumerate(blocks)
    )
    (tmp_path / "readme_blocks.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "readme_blocks.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=default_codegen_env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert f"--- README block {len(blocks)} of {len(blocks)}" in result.stdout
    assert (tmp_path / "runs" / "readme-pendulum" / "checkpoints").is_dir()


def _notebook_cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and NOTEBOOK.name in README.read_text()
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    stored = [c for c in code if c["outputs"] or c["execution_count"]]
    assert len(code) >= 5 and not stored  # no outputs in git: they would go stale
    return ["".join(c["source"]) for c in code]


def test_the_notebook_is_stored_without_outputs_and_every_name_it_imports_exists():
    """The default suite's check of the notebook (running it takes minutes: the slow test)."""
    import ast
    import importlib

    tree = ast.parse("\n\n".join(_notebook_cells()))
    imported = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert {n.module for n in imported} >= {"agents.run", "agents.loading", "agents.video"}
    for node in imported:
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


@pytest.mark.slow
def test_the_notebooks_cells_run_in_order(tmp_path, default_codegen_env):
    """Trains, plots, resumes, loads, evaluates and records (about 5-13 minutes on 2 cores)."""
    from PIL import Image

    (tmp_path / "notebook.py").write_text("\n\n".join(_notebook_cells()))
    result = subprocess.run(
        [sys.executable, "notebook.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**default_codegen_env, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    run = tmp_path / "runs" / "notebook-pendulum"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_steps"] > 2_000  # trained, then resumed for one more chunk
    assert json.loads((run / "eval.json").read_text())["eval/return"] > 0
    assert Image.open(tmp_path / "pendulum.gif").n_frames == 50
