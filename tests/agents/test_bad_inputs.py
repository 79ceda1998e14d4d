"""Bad inputs to `wm` that must fail cleanly before anything compiles: one message, exit code 2
(or 1 for a failure while running), and nothing a user owns deleted or left behind.

Each test reproduces a defect of issue 13 (its number in the test's docstring). None of them
builds a train step: the ones that reach `build` use a bad backend, which fails while the env is
constructed.
"""

import dataclasses
import errno
import json
import os
import tempfile
from types import SimpleNamespace

import pytest

import agents.run
from agents.checkpoint import Checkpointer
from agents.cli import main
from agents.config import TrainConfig
from agents.run import config_to_dict


@pytest.fixture(autouse=True)
def _no_compile_cache(monkeypatch):
    # `main` would point JAX's persistent cache at ~/.cache for the rest of the test process.
    monkeypatch.setenv("WM_JAX_CACHE", "")


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr()


def _user_files(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "data").mkdir()
    (path / "data" / "x.csv").write_text("1,2\n")
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _fake_run(path, **overrides):
    """A run directory as `wm train` leaves it: config, metrics, a checkpoint folder."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(TrainConfig(), **overrides)
    (path / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    (path / "metrics.jsonl").write_text('{"env_steps": 200, "wall_s": 1.0}\n')
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "keep.me").write_text("checkpoint bytes")
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def no_build(monkeypatch):
    """Fails the test if the run gets as far as building (and so compiling) anything."""

    def fail(cfg):
        raise AssertionError("build was reached")

    monkeypatch.setattr(agents.run, "build", fail)


def test_overwrite_never_deletes_a_directory_that_is_not_a_run(tmp_path, capsys, no_build):
    """1: `--overwrite --backend bogus` on a user's directory deleted it before failing."""
    out = tmp_path / "mine"
    before = _user_files(out)
    code, res = _run(capsys, "train", "--out", out, "--overwrite", "--backend", "bogus")
    assert code == 2 and _listing(out) == before
    assert "not a run directory" in res.err and "--overwrite" not in res.err
    assert len(res.err.strip().splitlines()) == 2  # "run directory: ..." and the error


@pytest.mark.parametrize("with_run", [False, True])
def test_overwrite_refuses_the_working_directory(tmp_path, capsys, monkeypatch, with_run):
    """1: `--out . --overwrite` deleted every file in the working directory."""
    before = _fake_run(tmp_path) if with_run else _user_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, res = _run(capsys, "train", "--out", ".", "--overwrite")
    assert code == 2 and _listing(tmp_path) == before
    assert ("working directory" if with_run else "not a run directory") in res.err


def test_overwrite_refuses_a_parent_of_the_working_directory(tmp_path, capsys, monkeypatch):
    """1: a run directory that contains the working directory is never replaced."""
    before = _fake_run(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    code, res = _run(capsys, "train", "--out", "..", "--overwrite")
    assert code == 2 and "working directory" in res.err
    assert _listing(tmp_path) == sorted([*before, "sub"])


def test_overwrite_that_fails_in_the_build_keeps_the_old_run(tmp_path, capsys):
    """1: on a real run, `--overwrite` deleted the checkpoints and metrics, then failed."""
    out = tmp_path / "run"
    before = _fake_run(out)
    code, res = _run(capsys, "train", "--out", out, "--overwrite", "--backend", "bogus")
    assert code == 2 and "backend" in res.err
    assert _listing(out) == before and _listing(tmp_path) == ["run", *[f"run/{p}" for p in before]]


def test_a_failed_start_leaves_nothing_behind(tmp_path, capsys):
    """4: a start that failed in the build left config.json, so a rerun was refused."""
    out = tmp_path / "new"
    code, res = _run(capsys, "train", "--out", out, "--backend", "bogus")
    assert code == 2 and "backend" in res.err and not out.exists()
    (tmp_path / "empty").mkdir()
    code, _ = _run(capsys, "train", "--out", tmp_path / "empty", "--backend", "bogus")
    assert code == 2 and _listing(tmp_path / "empty") == []


def test_an_existing_run_is_refused_with_resume_and_overwrite_hints(tmp_path, capsys, no_build):
    before = _fake_run(tmp_path / "run")
    code, res = _run(capsys, "train", "--out", tmp_path / "run")
    assert code == 2 and "--resume" in res.err and "--overwrite" in res.err
    assert _listing(tmp_path / "run") == before


@pytest.mark.parametrize("kind", ["parent_is_file", "out_is_file"])
def test_unusable_out_is_one_message_before_compiling(tmp_path, capsys, no_build, kind):
    """8: an invalid --out printed an 18-26-line traceback, after compiling."""
    (tmp_path / "f").write_text("a file")
    out = tmp_path / "f" / "run" if kind == "parent_is_file" else tmp_path / "f"
    code, res = _run(capsys, "train", "--out", out)
    assert code == 2 and "is a file" in res.err and "Traceback" not in res.err
    assert (tmp_path / "f").read_text() == "a file"


@pytest.mark.parametrize("err", [errno.EACCES, errno.EROFS])
def test_unwritable_out_is_one_message_before_compiling(
    tmp_path, capsys, no_build, monkeypatch, err
):
    """8: permission denied / read-only filesystem. As root no permission is ever denied, so
    the probe's OS call is made to fail the way the kernel would."""

    def refuse(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code, res = _run(capsys, "train", "--out", tmp_path / "run")
    assert code == 2 and os.strerror(err) in res.err and str(tmp_path) in res.err
    assert "Traceback" not in res.err and not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tmp_path, capsys, no_build):
    (tmp_path / "f").write_text("a file")
    code, res = _run(capsys, "train", "--out", tmp_path / "f", "--debug")
    assert code == 2 and "Traceback" in res.err and "is a file" in res.err


def _corrupt_checkpoints(run_dir, junk=False):
    config = json.loads((run_dir / "config.json").read_text())
    ckpt = Checkpointer(run_dir / "checkpoints", config=config)
    ckpt.save(1, {"w": [1.0, 2.0]})
    ckpt.save(2, {"w": [1.0, 2.0]})
    ckpt.close()
    for path in (run_dir / "checkpoints").rglob("*"):
        if path.is_file() and path.parent.name != "extra":
            path.write_bytes(b"\0garbage")
    if junk:
        (run_dir / "checkpoints" / "notes.txt").write_text("mine")
        (run_dir / "checkpoints" / "7").mkdir()


@pytest.mark.parametrize("junk", [False, True])
def test_no_valid_checkpoint_is_one_message(tmp_path, capsys, junk):
    """8: both kept checkpoints corrupt, or junk in the checkpoint directory: a traceback."""
    _fake_run(tmp_path)
    (tmp_path / "checkpoints" / "keep.me").unlink()
    _corrupt_checkpoints(tmp_path, junk=junk)
    code, res = _run(capsys, "eval", tmp_path)
    assert code == 1, res.err
    assert "Traceback" not in res.err
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(tmp_path / "checkpoints") in errors[0]


def test_resume_with_a_different_out_is_refused(tmp_path, capsys, no_build):
    """9: `--out` was ignored silently with `--resume`."""
    _fake_run(tmp_path / "run")
    code, res = _run(capsys, "train", "--resume", tmp_path / "run", "--out", tmp_path / "other")
    assert code == 2 and "--out" in res.err and "--resume" in res.err
    assert not (tmp_path / "other").exists()


def test_broken_config_json_names_the_file(tmp_path, capsys):
    """9: a JSON error in config.json named no file."""
    _fake_run(tmp_path)
    (tmp_path / "config.json").write_text('{"env": "hopper",')
    for argv in (["train", "--resume", tmp_path], ["eval", tmp_path]):
        code, res = _run(capsys, *argv)
        assert code == 2 and str(tmp_path / "config.json") in res.err and "JSON" in res.err


def test_a_config_missing_a_section_is_refused(tmp_path, capsys):
    """9: a missing section was filled with the official defaults (other sizes on resume)."""
    _fake_run(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    del data["agent"][TrainConfig().agent.name]["model"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    code, res = _run(capsys, "train", "--resume", tmp_path)
    assert code == 2 and "agent.tdmpc2" in res.err and "model" in res.err and "missing" in res.err


def test_eval_without_a_checkpoint_creates_nothing(tmp_path, capsys):
    """9: `wm eval` of a run with no checkpoint created an empty checkpoints/."""
    _fake_run(tmp_path)
    (tmp_path / "checkpoints" / "keep.me").unlink()
    (tmp_path / "checkpoints").rmdir()
    code, res = _run(capsys, "eval", tmp_path)
    assert code == 2 and "no checkpoint" in res.err
    assert not (tmp_path / "checkpoints").exists()


def test_errors_name_nested_fields_without_internal_names(capsys):
    """9: error boxes showed tyro's internal `__tyro-dummy-inner__`."""
    code, res = _run(capsys, "train", "tdmpc2", "--lr", "nan")
    assert code == 2 and "TDMPC2Config.lr" in res.err
    assert "tyro" not in res.err and "dummy" not in res.err


def test_a_changed_sub_field_on_resume_is_named_in_full(tmp_path, capsys, no_build):
    """9: a changed sub-field was named only by its section (`tdmpc2`, not `tdmpc2.lr`)."""
    _fake_run(tmp_path)
    code, res = _run(capsys, "train", "--resume", tmp_path, "--model.latent-dim", "32")
    assert code == 2 and "agent.tdmpc2.model.latent_dim" in res.err


def test_a_failure_while_running_is_exit_1_with_the_real_error_first(tmp_path, capsys, monkeypatch):
    """8: a full disk during a save printed 205 lines whose last was PIL failing on curve.png."""

    def fail(*args, **kwargs):
        error = agents.run.RunError("could not write the checkpoint of env step 160 to X: full")
        error.add_note("also failed: writing metrics.csv and curve.png: No space left on device")
        raise error

    monkeypatch.setattr(agents.run, "run_training", fail)
    code, res = _run(capsys, "train", "--out", tmp_path / "run")
    lines = res.err.strip().splitlines()[1:]  # after "run directory: ..."
    assert code == 1 and lines[0].startswith("error: could not write the checkpoint")
    assert "--debug" in lines[0] and "curve.png" in lines[1] and len(lines) == 2


def test_a_tensorstore_disk_error_is_named_as_the_os_error():
    """8: a full disk inside orbax's tensorstore write showed its 1000-character spec."""
    spec = '[tensorstore_spec=\'{"driver":"zarr"}\'] ' * 20
    error = ValueError(
        'RESOURCE_EXHAUSTED: Error writing local file "/runs/a/checkpoints/_sharding": Failed to '
        f"write 34077 bytes to file 6: No space left on device {spec}[os_error_code='28']"
    )
    wrapped = agents.run.RunError("could not write")
    wrapped.__cause__ = error
    assert agents.run.root_cause(wrapped) == (
        f"{os.strerror(errno.ENOSPC)}: /runs/a/checkpoints/_sharding"
    )
    assert agents.run.root_cause(ValueError("a\nb")) == "ValueError: b"


@pytest.mark.parametrize("debug", [False, True])
def test_echoes_of_a_failed_checkpoint_write_are_dropped_without_debug(monkeypatch, debug):
    """8: a full disk mid-checkpoint printed 100-1400 lines of "Event loop is closed"
    tracebacks (tensorstore's writes finishing after orbax closed its loop) after the error."""
    import logging
    import sys
    import warnings

    import agents.cli

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    monkeypatch.setattr(logging.getLogger("absl"), "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger("asyncio"), "level", logging.NOTSET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agents.cli._setup_logging(debug)
        for exc in (RuntimeError("Event loop is closed"), RuntimeError("other")):
            sys.unraisablehook(SimpleNamespace(exc_type=type(exc), exc_value=exc, object=None))
        warnings.warn("coroutine 'write_fragment' was never awaited", RuntimeWarning, stacklevel=1)
    messages = [str(u.exc_value) for u in seen]
    assert messages == (["Event loop is closed", "other"] if debug else ["other"])
    assert len(caught) == (1 if debug else 0)
    quiet = logging.getLogger("asyncio").getEffectiveLevel() > logging.ERROR
    assert quiet != debug
