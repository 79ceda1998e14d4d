"""The `wm` command: parsing, errors before compiling, and refusing to overwrite."""

import dataclasses
import json

import pytest

from agents.cli import main, parse
from agents.config import TrainConfig
from agents.run import config_to_dict


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
        "--model.latent-dim",
        "--planner.num-samples",
        "--mpc",
        "--resume",
        "--overwrite",
        "--schedule",
        "--fit-epochs",
        "--fit-holdout",
        "--fit-patience",
        "--fit-metric",
    ):
        assert flag in out.out, flag
    assert "tdmpc2" in out.out and "dreamer" in out.out  # the agents, as subcommands


def test_only_the_chosen_agents_flags_exist(capsys):
    code, out = _run(capsys, "train", "dreamer", "--help")
    assert code == 0 and "--horizon" in out.out and "--planner.num-samples" not in out.out
    assert "--steps" in out.out  # the run's own flags stay
    code, out = _run(capsys, "train", "dreamer", "--planner.num-samples", "8")
    assert code == 2
    cmd = parse(["train", "dreamer", "--horizon", "7", "--steps", "900"])
    assert type(cmd.agent).name == "dreamer" and cmd.agent.horizon == 7 and cmd.steps == 900
    assert cmd.agent.batch_length == 32  # a subcommand starts from the agent's cpu() preset
    assert parse(["train"]).agent == TrainConfig().agent


def test_the_schedule_is_chosen_by_flags(capsys):
    cmd = parse(["train", "--schedule", "episodic", "--fit-epochs", "7", "--fit-holdout", "0.1"])
    assert (cmd.schedule, cmd.fit_epochs, cmd.fit_holdout) == ("episodic", 7, 0.1)
    assert parse(["train"]).schedule == "interleaved"
    cmd = parse(["train", "dreamer", "--schedule", "episodic", "--fit-patience", "3"])
    assert (
        cmd.schedule == "episodic" and cmd.fit_patience == 3 and type(cmd.agent).name == "dreamer"
    )
    code, out = _run(capsys, "train", "--schedule", "sometimes")
    assert code == 2 and "interleaved" in out.err and "episodic" in out.err


def test_unknown_env_lists_valid_names(capsys):
    code, out = _run(capsys, "train", "--env", "cartpole")
    assert code == 2
    assert "unknown env 'cartpole'" in out.err and "hopper" in out.err and "walker2d" in out.err


def test_inconsistent_planner_config_names_the_field(capsys):
    code, out = _run(
        capsys,
        "train",
        "--planner.num-samples",
        "8",
        "--planner.num-pi-trajs",
        "0",
        "--planner.num-elites",
        "64",
    )
    assert code == 2 and "num_elites" in out.err


def test_negative_size_names_the_field(capsys):
    code, out = _run(capsys, "train", "--model.latent-dim", "-8")
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
    assert cmd.agent == TrainConfig().agent
    cmd = parse(["train", "--resume", str(saved_run), "--steps", "200000"])
    assert cmd.steps == 200_000 and cmd.seed == 7


def test_resume_refuses_a_changed_config_naming_the_field(saved_run, capsys):
    code, out = _run(capsys, "train", "--resume", str(saved_run), "--num-envs", "16")
    assert code == 2 and "cannot change num_envs" in out.err
    code, out = _run(capsys, "train", "--resume", str(saved_run), "--schedule", "episodic")
    assert code == 2 and "cannot change schedule" in out.err


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    code, out = _run(capsys, "train", "--resume", str(tmp_path / "nope"))
    assert code == 2 and "not a run directory" in out.err


def test_bench_benchmarks_the_selected_agent(monkeypatch, tmp_path, capsys):
    import agents.bench

    seen = []
    fake = lambda cfg, repeats: seen.append((cfg.agent, repeats)) or {"agent": cfg.agent.name}
    monkeypatch.setattr(agents.bench, "bench_config", fake)
    out = tmp_path / "bench.json"
    main(["bench", "dreamer", "--repeats", "2", "--json-out", str(out)])
    ((agent, repeats),) = seen
    assert type(agent).name == "dreamer" and repeats == 2
    assert json.loads(out.read_text()) == {"agent": "dreamer"}


def test_a_resumed_dreamer_run_stays_dreamer(tmp_path):
    from agents.dreamer import DreamerConfig

    cfg = TrainConfig(agent=DreamerConfig.cpu(), steps=5000)
    (tmp_path / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    cmd = parse(["train", "--resume", str(tmp_path), "--steps", "9000"])
    assert cmd.agent == cfg.agent and cmd.steps == 9000


def test_a_run_of_the_earlier_release_is_refused_with_the_reason(tmp_path, capsys):
    old = {k: v for k, v in config_to_dict(TrainConfig()).items() if k != "agent"}
    old.update(agent="tdmpc2", tdmpc2={}, dreamer={})  # how <= e561fee saved a config
    (tmp_path / "config.json").write_text(json.dumps(old))
    code, out = _run(capsys, "train", "--resume", str(tmp_path))
    assert code == 2 and "earlier release" in out.err and "e561fee" in out.err


@pytest.mark.parametrize("agent, tuned", [("tdmpc2", False), ("dreamer", True)])
def test_host_allocator_is_tuned_only_for_agents_that_want_it(monkeypatch, tmp_path, agent, tuned):
    # One malloc arena halved TD-MPC2's train chunk (agents.hostmem); Dreamer's updates gain.
    import agents.bench
    import agents.cli

    calls = []
    monkeypatch.setattr(agents.cli, "tune_host_allocator", lambda: calls.append(True))
    monkeypatch.setattr(agents.bench, "bench_config", lambda cfg, repeats: {})
    main(["bench", agent, "--repeats", "1", "--json-out", str(tmp_path / "b.json")])
    assert calls == ([True] if tuned else [])
