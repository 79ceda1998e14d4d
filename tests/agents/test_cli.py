"""The `wm` command: parsing, errors before compiling, and refusing to overwrite."""

import dataclasses
import json

import pytest

from agents.cli import main, parse
from agents.run import config_to_dict
from agents.train import TrainConfig


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code, capsys.readouterr()


def test_help_lists_subcommands(capsys):
    code, out = _run(capsys, "--help")
    assert code == 0
    assert all(cmd in out.out for cmd in ("train", "eval", "bench"))


def test_train_help_shows_config_flags(capsys):
    code, out = _run(capsys, "train", "--help")
    assert code == 0
    for flag in (
        "--env",
        "--steps",
        "--num-envs",
        "--seed",
        "--tdmpc2.model.latent-dim",
        "--tdmpc2.planner.num-samples",
        "--tdmpc2.mpc",
        "--resume",
        "--overwrite",
    ):
        assert flag in out.out, flag


def test_unknown_env_lists_valid_names(capsys):
    code, out = _run(capsys, "train", "--env", "cartpole")
    assert code == 2
    assert "unknown env 'cartpole'" in out.err and "hopper" in out.err and "walker2d" in out.err


def test_inconsistent_planner_config_names_the_field(capsys):
    code, out = _run(
        capsys,
        "train",
        "--tdmpc2.planner.num-samples",
        "8",
        "--tdmpc2.planner.num-pi-trajs",
        "0",
        "--tdmpc2.planner.num-elites",
        "64",
    )
    assert code == 2 and "num_elites" in out.err


def test_negative_size_names_the_field(capsys):
    code, out = _run(capsys, "train", "--tdmpc2.model.latent-dim", "-8")
    assert code == 2 and "latent_dim" in out.err


def test_eval_of_a_missing_run_is_a_clear_error(capsys, tmp_path):
    code, out = _run(capsys, "eval", str(tmp_path / "nope"))
    assert code == 2 and "not a run directory" in out.err


@pytest.fixture
def saved_run(tmp_path):
    cfg = dataclasses.replace(TrainConfig(), steps=123_000, seed=7)
    (tmp_path / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    return tmp_path


def test_resume_keeps_the_saved_config_unless_a_flag_is_given(saved_run):
    cmd = parse(["train", "--resume", str(saved_run)])
    assert cmd.steps == 123_000 and cmd.seed == 7 and cmd.resume == str(saved_run)
    cmd = parse(["train", "--resume", str(saved_run), "--steps", "200000"])
    assert cmd.steps == 200_000 and cmd.seed == 7


def test_resume_refuses_a_changed_config_naming_the_field(saved_run, capsys):
    code, out = _run(capsys, "train", "--resume", str(saved_run), "--num-envs", "16")
    assert code == 2 and "cannot change num_envs" in out.err


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    code, out = _run(capsys, "train", "--resume", str(tmp_path / "nope"))
    assert code == 2 and "not a run directory" in out.err


def test_bench_benchmarks_the_selected_agent(monkeypatch, tmp_path, capsys):
    import agents.bench

    seen = []
    fake = lambda cfg, repeats: seen.append((cfg.agent, repeats)) or {"agent": cfg.agent}
    monkeypatch.setattr(agents.bench, "bench_config", fake)
    out = tmp_path / "bench.json"
    main(["bench", "--agent", "dreamer", "--repeats", "2", "--json-out", str(out)])
    assert seen == [("dreamer", 2)] and json.loads(out.read_text()) == {"agent": "dreamer"}
