"""The train loop: chunks compile once, resume is exact, a run directory has everything."""

import dataclasses
import json

import jax
import numpy as np
import pytest

import agents.run
from agents.checkpoint import Checkpointer
from agents.metrics import MetricsLog
from agents.run import (
    RESUMABLE_FIELDS,
    build,
    config_from_dict,
    config_to_dict,
    evaluate_run,
    run_training,
)
from agents.tdmpc2 import TDMPC2Config
from agents.train import TrainConfig

CFG = TrainConfig(
    env="inverted_pendulum",
    steps=480,
    num_envs=2,
    action_repeat=2,
    episode_length=60,
    seed_steps=80,
    chunk_steps=20,
    replay_capacity=400,
    eval_every=160,
    eval_episodes=2,
    checkpoint_every=160,
    tdmpc2=TDMPC2Config.tiny(),
)


_BUILT = {}


def _shared_build(cfg):
    """`build`, once per config up to the schedule fields (no compiled function reads them): the
    run-directory tests then reuse the compiled chunks instead of tracing them again."""
    fields = {k: v for k, v in config_to_dict(cfg).items() if k not in RESUMABLE_FIELDS}
    key = json.dumps(fields, sort_keys=True)
    if key not in _BUILT:
        _BUILT[key] = build(cfg)
    return _BUILT[key]


@pytest.fixture(autouse=True)
def _share_compiled(monkeypatch):
    monkeypatch.setattr(agents.run, "build", _shared_build)


@pytest.fixture(scope="module")
def trainer():
    return _shared_build(CFG)[2]


def _leaves(state):
    return [
        np.asarray(
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        )
        for x in jax.tree.leaves(state)
    ]


def _copy(state):
    return jax.tree.map(lambda x: x.copy(), state)


def test_chunks_compile_once_and_learn_metrics(trainer, count_compiles):
    state = trainer.init(jax.random.key(0))
    state, seed_metrics = trainer.seed_chunk(state)
    assert int(state.agent_steps) == CFG.seed_agent_steps
    state, metrics = trainer.train_chunk(state)
    with count_compiles() as events:
        state, metrics = jax.block_until_ready(trainer.train_chunk(state))
    assert events == []
    assert np.isfinite(float(metrics["loss/model"]))
    assert int(state.agent_steps) == CFG.seed_agent_steps + 2 * CFG.chunk_steps
    result = trainer.evaluate(state.agent, jax.random.key(1))
    assert 0 < float(result["eval/return"]) <= CFG.episode_length


def test_resume_continues_exactly(trainer, tmp_path, count_compiles):
    state = trainer.init(jax.random.key(3))
    state, _ = trainer.seed_chunk(state)
    state, _ = trainer.train_chunk(state)
    ckpt = Checkpointer(tmp_path, config={"a": 1})
    ckpt.save(1, state)
    ckpt.wait()
    straight, _ = trainer.train_chunk(_copy(state))
    straight, _ = trainer.train_chunk(straight)
    restored, _ = ckpt.restore(jax.eval_shape(trainer.init, jax.random.key(0)))
    ckpt.close()
    with count_compiles() as events:  # a restored state is placed as a fresh one: no recompile
        resumed, _ = trainer.train_chunk(restored)
        resumed, _ = jax.block_until_ready(trainer.train_chunk(resumed))
    assert events == []
    for a, b in zip(_leaves(straight), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_config_round_trips_through_json():
    data = json.loads(json.dumps(config_to_dict(CFG)))
    assert config_from_dict(TrainConfig, data) == CFG
    with pytest.raises(ValueError, match="unknown config fields"):
        config_from_dict(TrainConfig, {**data, "bogus": 1})


def test_run_directory_resume_and_eval(tmp_path):
    out = tmp_path / "run"
    last = run_training(CFG, out, progress=False, log=lambda *_: None)
    assert last["env_steps"] == CFG.steps
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "curve.png"):
        assert (out / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("env_steps" in r and "wall_s" in r for r in rows)
    assert sum("eval/return" in r for r in rows) >= CFG.steps // CFG.eval_every
    assert any("loss/model" in r for r in rows)
    assert list((out / "checkpoints").iterdir())

    with pytest.raises(FileExistsError, match="--resume"):
        run_training(CFG, out, progress=False)

    longer = dataclasses.replace(CFG, steps=CFG.steps + CFG.env_steps_per_chunk)
    last = run_training(longer, out, resume=True, progress=False, log=lambda *_: None)
    assert last["env_steps"] == longer.steps
    steps = [
        json.loads(line)["env_steps"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps))  # no duplicated or reordered rows after resume

    result = evaluate_run(out)
    assert result["env_steps"] == longer.steps and 0 < result["eval/return"] <= CFG.episode_length
    assert json.loads((out / "eval.json").read_text())["eval/return"] == result["eval/return"]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"env": "cartpole"}, "inverted_pendulum"),
        ({"num_envs": 0}, "num_envs"),
        ({"steps": -1}, "steps"),
        ({"replay_capacity": 3}, "replay_capacity"),
    ],
)
def test_bad_train_config_raises_before_compiling(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path, monkeypatch):
    out, write = tmp_path / "run", MetricsLog.write
    calls = {"n": 0}

    def interrupt_on_third_row(self, *args, **kwargs):
        calls["n"] += 1
        row = write(self, *args, **kwargs)
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return row

    monkeypatch.setattr(MetricsLog, "write", interrupt_on_third_row)
    with pytest.raises(KeyboardInterrupt):
        run_training(CFG, out, progress=False, log=lambda *_: None)
    monkeypatch.setattr(MetricsLog, "write", write)
    interrupted_at = (
        CFG.seed_agent_steps * CFG.env_steps_per_agent_step + 2 * CFG.env_steps_per_chunk
    )
    ckpt = Checkpointer(out / "checkpoints", config=config_to_dict(CFG))
    assert ckpt.latest_step() == interrupted_at  # not the last periodic checkpoint (160)
    ckpt.close()
    last = run_training(CFG, out, resume=True, progress=False, log=lambda *_: None)
    assert last["env_steps"] == CFG.steps
