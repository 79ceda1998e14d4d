"""What a user sees of a run: the compile cache it shares with `wm`, the progress bar, the summary,
metrics files rewritten at every evaluation, TensorBoard events, and metrics absent (not 0) when
nothing happened."""

import jax
import pytest

import agents.run
from agents.compile_cache import enable_compile_cache
from agents.config import TrainConfig


@pytest.fixture
def no_cache_dir():
    """JAX with no compilation cache directory set (the test session's restored after)."""
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_the_compile_cache_is_wm_jax_cache_unless_one_is_set(no_cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WM_JAX_CACHE", "")
    assert enable_compile_cache() is None and not jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("WM_JAX_CACHE", str(tmp_path / "a"))
    assert enable_compile_cache() == str(tmp_path / "a")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
    monkeypatch.setenv("WM_JAX_CACHE", str(tmp_path / "b"))  # one set already is kept
    assert enable_compile_cache() == str(tmp_path / "a")


def test_run_training_uses_the_clis_compile_cache(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(agents.run, "enable_compile_cache", lambda: calls.append(1))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(FileExistsError):  # before anything is compiled
        agents.run.run_training(TrainConfig(), tmp_path / "run", progress=False)
    assert calls == [1]
