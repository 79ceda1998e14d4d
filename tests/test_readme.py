"""Every Python block of README.md runs as written: in order, in one fresh process (later blocks
use what earlier ones built, as a reader following the manual would), in an empty directory. So
does every code cell of the training notebook (examples/), which runs the README's training config
and so reuses its compiled programs from `wm`'s compile cache (same file, same worker, after it)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
NOTEBOOK = README.parent / "examples" / "train_from_python.ipynb"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_readme_has_python_blocks_for_each_part_of_the_manual():
    text = "\n".join(_blocks())
    for used in ("wm.mppi", "make_tdmpc_model", "run_training", "load_run", "wrap_env", "make_env"):
        assert used in text, used


def test_every_python_block_of_the_readme_runs(tmp_path):
    blocks = _blocks()
    script = "\n".join(
        f"print('--- README block {i + 1} of {len(blocks)}', flush=True)\n{b}"
        for i, b in enumerate(blocks)
    )
    (tmp_path / "readme_blocks.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "readme_blocks.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert f"--- README block {len(blocks)} of {len(blocks)}" in result.stdout
    assert (tmp_path / "runs" / "readme-pendulum" / "checkpoints").is_dir()


def test_the_notebook_is_stored_without_outputs_and_its_cells_run_in_order(tmp_path):
    from PIL import Image

    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and NOTEBOOK.name in README.read_text()
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    stored = [
        c
        for c in nb["cells"]
        if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])
    ]
    assert len(cells) >= 5 and not stored  # no outputs in git: they would go stale
    (tmp_path / "notebook.py").write_text("\n\n".join(cells))
    result = subprocess.run(
        [sys.executable, "notebook.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    run = tmp_path / "runs" / "notebook-pendulum"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_steps"] > 2_000  # trained, then resumed for one more chunk
    assert json.loads((run / "eval.json").read_text())["eval/return"] > 0
    assert Image.open(tmp_path / "pendulum.gif").n_frames == 50
