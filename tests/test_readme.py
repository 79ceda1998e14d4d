"""Every Python block of README.md runs as written: in order, in one fresh process (later blocks
use what earlier ones built, as a reader following the manual would), in an empty directory."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
