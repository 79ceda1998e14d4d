"""benchmarks/brax_baselines.py and benchmarks/anchors/brax_runner.py: the parts that need no venv,
no Brax and no compilation (settings, eval schedule, requirements hash, tables, the driver loop
with a stand-in runner)."""

import argparse
import json
import sys
import textwrap
from pathlib import Path

import pytest
from _bench import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


bb = load_benchmark("brax_baselines")
runner = bb.load_runner()


def test_runner_imports_neither_brax_nor_the_project():
    assert not {"brax", "jax", "envs"} & vars(runner).keys()  # imported only when training
    source = (ROOT / "benchmarks" / "anchors" / "brax_runner.py").read_text()
    assert "worldmodels" not in source.replace("`worldmodels`", "")
    assert "import agents" not in source and "from agents" not in source


def test_requirements_hash_ignores_comments_but_not_versions():
    base = "jax==0.8.3\nbrax==0.14.2\n"
    h = bb.requirements_hash(base)
    assert bb.requirements_hash("# a comment\n\njax==0.8.3  # pinned\nbrax==0.14.2\n") == h
    assert bb.requirements_hash("jax==0.8.2\nbrax==0.14.2\n") != h
    assert bb.requirements_hash("jax==0.8.3\n") != h


def test_requirements_pin_the_jax_that_brax_training_needs():
    pins = dict(
        line.split("#")[0].strip().split("==")
        for line in bb.REQUIREMENTS.read_text().splitlines()
        if "==" in line.split("#")[0]
    )
    assert pins["jax"] == pins["jaxlib"] == "0.8.3"
    assert {"brax", "flax", "optax", "numpy", "mujoco"} <= pins.keys()


def test_venv_is_current_only_with_python_and_the_same_hash(tmp_path):
    venv = tmp_path / "venv"
    assert not bb.venv_is_current(venv, "abc")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    assert not bb.venv_is_current(venv, "abc")  # no hash stored: half-made
    (venv / bb.HASH_FILE).write_text("abc\n")
    assert bb.venv_is_current(venv, "abc")
    assert not bb.venv_is_current(venv, "def")


def test_work_dir_is_runs_when_git_ignores_it(tmp_path):
    assert bb.work_dir(tmp_path, ignored=lambda p, r: True) == tmp_path / "runs"
    other = bb.work_dir(tmp_path, ignored=lambda p, r: False)
    assert other == Path.home() / ".cache" / "worldmodels"


def test_settings_lookup_tuned_and_fallback():
    label, hp = runner.lookup_settings("sac", "hopper", "tuned")
    assert label == "tuned"
    assert (hp["num_envs"], hp["batch_size"], hp["grad_updates_per_step"]) == (128, 512, 64)
    assert (hp["discounting"], hp["reward_scaling"], hp["learning_rate"]) == (0.997, 30.0, 6e-4)
    assert (hp["min_replay_size"], hp["max_replay_size"]) == (8192, 1048576)
    label, hp = runner.lookup_settings("sac", "walker2d", "tuned")
    assert label == "tuned" and hp["grad_updates_per_step"] == 32 and hp["reward_scaling"] == 5.0
    label, hp = runner.lookup_settings("ppo", "hopper", "tuned")
    assert label == runner.FALLBACK_LABEL and hp == runner.DEFAULT["ppo"]
    label, hp = runner.lookup_settings("ppo", "halfcheetah", "tuned")
    assert label == "tuned" and hp["unroll_length"] == 20 and hp["discounting"] == 0.95
    hp["num_envs"] = 1  # a copy: the tables stay as they are
    assert runner.TUNED[("ppo", "halfcheetah")]["num_envs"] == 2048
    with pytest.raises(ValueError):
        runner.lookup_settings("td3", "hopper", "default")
    with pytest.raises(ValueError):
        runner.lookup_settings("sac", "hopper", "best")


def test_sac_eval_schedule_matches_brax_epochs_and_interval():
    num_evals, points = runner.eval_schedule("sac", runner.DEFAULT["sac"], 100_000, 10_000)
    # Prefill of 8,192 steps (128 steps of 64 envs), then 10 epochs of 144 steps of 64 envs.
    assert num_evals == 11
    assert points == [0] + [8192 + i * 9216 for i in range(1, 11)]
    assert points[-1] >= 100_000
    gaps = [b - a for a, b in zip(points[1:], points[2:], strict=False)]
    assert max(gaps) <= 10_000
    with pytest.raises(ValueError):
        runner.eval_schedule("sac", runner.DEFAULT["sac"], 8000, 1000)


def test_ppo_eval_schedule_is_whole_training_steps():
    hp = runner.DEFAULT["ppo"]
    per_step = hp["batch_size"] * hp["unroll_length"] * hp["num_minibatches"]
    assert per_step == 5120 and (hp["batch_size"] * hp["num_minibatches"]) % hp["num_envs"] == 0
    num_evals, points = runner.eval_schedule("ppo", hp, 100_000, 10_000)
    assert num_evals == 21 and points == [i * 5120 for i in range(21)]
    num_evals, points = runner.eval_schedule("ppo", hp, 100_000, 20_480)
    assert num_evals == 6 and points[1] == 20_480 and points[-1] == 102_400
    with pytest.raises(ValueError):
        runner.eval_schedule("ppo", {**hp, "num_envs": 48}, 100_000, 10_000)


def test_tuned_num_envs_cap_keeps_ppo_valid():
    _, hp = runner.lookup_settings("ppo", "ant", "tuned")
    note = runner.cap_num_envs(hp, "ppo", 200)
    assert note["num_envs"]["tuned"] == 4096 and hp["num_envs"] == note["num_envs"]["used"] <= 200
    assert (hp["batch_size"] * hp["num_minibatches"]) % hp["num_envs"] == 0
    _, hp = runner.lookup_settings("sac", "hopper", "tuned")
    assert runner.cap_num_envs(hp, "sac", 256) is None and hp["num_envs"] == 128


def _args(**kw):
    base = dict(
        algo="sac",
        env="hopper",
        settings="tuned",
        steps=100_000,
        eval_every=10_000,
        episode_length=1000,
        num_eval_envs=16,
        deterministic_eval=False,
        seed=3,
        max_tuned_envs=256,
    )
    return argparse.Namespace(**{**base, **kw})


def test_build_kwargs_records_every_hyperparameter_and_change():
    label, kw, notes = runner.build_kwargs(_args())
    assert label == "tuned" and kw["seed"] == 3 and kw["action_repeat"] == 1
    assert kw["num_timesteps"] == 100_000 and kw["episode_length"] == 1000
    assert kw["num_evals"] == len(notes["expected_eval_steps"])
    assert kw["max_replay_size"] == notes["expected_eval_steps"][-1] < 1048576
    assert notes["max_replay_size"]["setting"] == 1048576
    assert notes["notebook_values_replaced"]["num_timesteps"] == 6_553_600
    label, kw, notes = runner.build_kwargs(_args(algo="ppo", env="ant"))
    assert kw["num_envs"] == 256 and notes["num_envs"]["tuned"] == 4096
    label, kw, _ = runner.build_kwargs(_args(algo="ppo", settings="default"))
    assert label == "default" and "max_replay_size" not in kw


def _run(seed, rewards, steps=(0, 5000, 10000)):
    return {
        "seed": seed,
        "settings": "default",
        "backend": "positional",
        "versions": {"jax": "0.8.3", "brax": "0.14.2", "python": "3.11"},
        "hyperparameters": {"num_eval_envs": 16, "episode_length": 1000, "seed": seed},
        "notes": {"expected_eval_steps": list(steps)},
        "rows": [
            {"env_steps": s, "eval/episode_reward": r, "wall_s": 10.0 * (i + 1) + seed}
            for i, (s, r) in enumerate(zip(steps, rewards, strict=False))
        ],
        "total_wall_s": 40.0 + seed,
    }


def test_merge_rows_summary_and_markdown():
    runs = [_run(0, [10.0, 20.0, 30.0]), _run(1, [20.0, 40.0])]  # seed 1 stopped early
    rows = bb.merge_rows(runs)
    assert [r["env_steps"] for r in rows] == [0, 5000, 10000]
    assert rows[1]["returns"] == {0: 20.0, 1: 40.0} and rows[1]["mean_return"] == 30.0
    assert rows[2]["returns"] == {0: 30.0} and rows[2]["mean_return"] == 30.0
    assert rows[0]["mean_wall_s"] == 10.5
    s = bb.summarize(runs)
    assert s["per_seed"][0]["final_return"] == 30.0 and s["per_seed"][1]["final_env_steps"] == 5000
    assert s["mean_final_return"] == 35.0 and s["mean_total_wall_s"] == 40.5
    assert s["per_seed"][0]["first_eval_after_training_wall_s"] == 20.0
    result = {
        "algo": "sac",
        "env": "hopper",
        "date": "2026-01-01",
        "commands": ["python benchmarks/brax_baselines.py --seeds 0,1"],
        "machine": {"cpu": "Test CPU", "kind": "AVX2", "cores": 2},
        "runs": runs,
        "summary": s,
        "failures": [],
    }
    md = bb.markdown(result)
    assert "| 5,000 | 20.0 | 40.0 | 30.0 |" in md
    assert "| 10,000 | 30.0 |  | 30.0 |" in md
    assert "Mean final return 35.0" in md and "jax 0.8.3" in md and "Test CPU" in md
    assert "`python benchmarks/brax_baselines.py --seeds 0,1`" in md


def test_run_streaming_returns_exit_code_and_stderr_tail(capsys):
    code = "import sys\nfor i in range(50): print('err', i, file=sys.stderr)\nprint('out')\n"
    rc, tail = bb.run_streaming([sys.executable, "-c", code + "sys.exit(3)"], tail_lines=5)
    assert rc == 3 and tail == [f"err {i}" for i in range(45, 50)]
    assert "out" in capsys.readouterr().out


FAKE_RUNNER = textwrap.dedent(
    """
    import argparse, json, sys
    p = argparse.ArgumentParser()
    for a in ("algo", "env", "steps", "seed", "settings", "episode-length", "backend",
              "eval-every", "num-eval-envs", "out"):
        p.add_argument("--" + a)
    a = p.parse_args()
    if a.seed == "1":
        print("boom: seed 1 fails", file=sys.stderr)
        sys.exit(2)
    steps = int(a.steps)
    rows = [{"env_steps": s, "eval/episode_reward": s / 100 + int(a.seed), "wall_s": s / 1000}
            for s in range(0, steps + 1, int(a.eval_every))]
    json.dump({"algo": a.algo, "env": a.env, "seed": int(a.seed), "settings": a.settings,
               "backend": a.backend, "rows": rows, "total_wall_s": 9.0, "complete": True,
               "versions": {"jax": "0.8.3", "brax": "0.14.2", "python": "3.11"},
               "hyperparameters": {"num_eval_envs": 16, "episode_length": 1000}},
              open(a.out, "w"))
    if a.seed == "4":  # stopped after its first evaluations: the file says so, as the runner's does
        json.dump({**json.load(open(a.out)), "rows": rows[:2], "complete": False}, open(a.out, "w"))
        sys.exit(1)
    """
)


def test_main_writes_results_keeps_earlier_seeds_and_reports_failures(
    tmp_path, monkeypatch, capsys
):
    fake = tmp_path / "fake_runner.py"
    fake.write_text(FAKE_RUNNER)
    monkeypatch.setattr(bb, "RUNNER", fake)
    monkeypatch.setattr(bb, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(bb, "work_dir", lambda: tmp_path / "work")
    monkeypatch.setattr(bb, "ensure_venv", lambda venv: Path(sys.executable))
    common = ["--algos", "sac", "--envs", "hopper", "--steps", "2000", "--eval-every", "1000"]
    assert bb.main([*common, "--seeds", "0"]) == 0
    path = tmp_path / "results" / "brax_sac_hopper_default.json"
    first = json.loads(path.read_text())
    assert [r["seed"] for r in first["runs"]] == [0] and first["summary"]["mean_final_return"] == 20
    # Seeds 1 (fails at once), 2 and 4 (stops after two evaluations) later: seed 0 kept, the
    # failures reported, seed 4's evaluations kept as a partial run, the exit code non-zero.
    assert bb.main([*common, "--seeds", "1,2,4"]) == 1
    result = json.loads(path.read_text())
    assert [r["seed"] for r in result["runs"]] == [0, 2, 4]
    assert [f["seed"] for f in result["failures"]] == [1, 4]
    assert [r.get("complete") for r in result["runs"]] == [True, True, False]
    assert result["summary"]["mean_final_return"] == 21.0  # seeds 0 and 2 only
    assert "boom: seed 1 fails" in result["failures"][0]["stderr_tail"]
    assert len(result["commands"]) == 2 and result["machine"]["cores"] >= 1
    md = (tmp_path / "results" / "brax_sac_hopper_default.md").read_text()
    assert "| 1,000 | 10.0 | 12.0 | 14.0 | 12.0 |" in md and "seed 4 (stopped)" in md
    assert (
        "| 2,000 | 20.0 | 22.0 |  | 21.0 |" in md and "| 4 | 1,000 | 14.0 | 9 | no: stopped |" in md
    )
    assert "boom: seed 1 fails" in capsys.readouterr().err
    # ppo/hopper has no tuned settings: with default also asked for, tuned is not run twice.
    assert bb.main([*common, "--algos", "ppo", "--settings", "default,tuned", "--seeds", "0"]) == 0
    assert (tmp_path / "results" / "brax_ppo_hopper_default.json").exists()
    assert not (tmp_path / "results" / "brax_ppo_hopper_tuned.json").exists()
