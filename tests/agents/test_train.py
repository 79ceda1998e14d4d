"""The train loop: chunks compile once, resume is exact, a run directory has everything."""

import dataclasses
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tiny_run import TINY_RUN

import agents.run
from agents import replay
from agents.checkpoint import Checkpointer
from agents.config import TrainConfig
from agents.metrics import MetricsLog
from agents.run import (
    RESUMABLE_FIELDS,
    Interrupted,
    RunError,
    build,
    config_from_dict,
    config_to_dict,
    evaluate_run,
    run_training,
)
from agents.rundir import save_config

CFG = TINY_RUN


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


# PETS' loop: collect the chunk's 20 steps, then fit by epochs over the whole replay.
EPISODIC = dataclasses.replace(
    CFG, schedule="episodic", fit_epochs=2, fit_holdout=0.2, fit_patience=1
)


def test_an_episodic_chunk_trains_tdmpc2(count_compiles):
    _, agent, trainer = _shared_build(EPISODIC)
    state, _ = trainer.seed_chunk(trainer.init(jax.random.key(0)))
    before = _float_leaves(state.agent)
    state, m = trainer.train_chunk(state)
    assert int(state.agent_steps) == CFG.seed_agent_steps + CFG.chunk_steps
    starts, held_out = int(m["fit/train_starts"]), int(m["fit/val_starts"])
    valid = replay.valid_starts(state.replay, agent.data.seq_len, agent.data.cross_episodes)
    assert starts + held_out == int(valid.sum())
    assert held_out == int((starts + held_out) * 0.2) > 0
    epochs, batches = int(m["fit/epochs"]), -(-starts // agent.data.batch_size)
    assert 1 <= epochs <= 2 and int(m["updates"]) == epochs * batches
    assert int(m["nonfinite_updates"]) == 0 and int(state.agent.updates) == epochs * batches
    assert np.isfinite(float(m["loss/model"])) and np.isfinite(float(m["fit/val_loss"]))
    after = _float_leaves(state.agent)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    with count_compiles() as events:
        state, m = jax.block_until_ready(trainer.train_chunk(state))
    assert events == [] and int(m["fit/train_starts"]) > starts


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
    data = json.loads(json.dumps(config_to_dict(EPISODIC)))
    assert data["schedule"] == "episodic" and config_from_dict(TrainConfig, data) == EPISODIC
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
        ({"num_seeds": 0}, "num_seeds"),
    ],
)
def test_bad_train_config_raises_before_compiling(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kwargs)


def test_a_replay_too_small_for_the_agents_sequences_is_refused_before_compiling():
    with pytest.raises(ValueError, match=r"replay_capacity \(3\) must hold .* sequence length"):
        build(dataclasses.replace(CFG, replay_capacity=3))


# Only schedule fields differ from CFG, so the compiled chunks are shared: evaluations at 160, 320
# and 480 env steps, checkpoints at 400 and 480 only (chunks end at 160, 240, 320, 400, 480).
SIG_CFG = dataclasses.replace(CFG, checkpoint_every=400)
_BASELINE = {}
_quiet = lambda *_: None  # noqa: E731


def _rows(out):
    """metrics.jsonl without wall time (which no two runs share)."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def _files(out):
    return sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())


def _baseline_rows():
    """The metrics of an uninterrupted run of SIG_CFG (run once per module)."""
    if not _BASELINE:
        out = Path(tempfile.mkdtemp(prefix="wm-baseline-")) / "run"
        run_training(SIG_CFG, out, progress=False, log=_quiet)
        _BASELINE["rows"] = _rows(out)
        shutil.rmtree(out.parent)
    return _BASELINE["rows"]


def _with_chunk(monkeypatch, wrap):
    """Runs build the shared trainer with `train_chunk` replaced by `wrap(train_chunk)`."""

    def patched(cfg):
        spec, agent, trainer = _shared_build(cfg)
        return spec, agent, trainer._replace(train_chunk=wrap(trainer.train_chunk))

    monkeypatch.setattr(agents.run, "build", patched)


def _signal_on_call(n, signum):
    """A train_chunk wrapper that sends `signum` to this process during its n-th call."""

    def wrap(chunk):
        calls = [0]

        def wrapped(state):
            calls[0] += 1
            out = chunk(state)
            if calls[0] == n:
                os.kill(os.getpid(), signum)
            return out

        return wrapped

    return wrap


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_chunk_loses_no_row_no_eval_and_resumes_exactly(tmp_path, monkeypatch, signum):
    """Issue 13.2/13.3: Ctrl-C mid-chunk wrote no metrics row for that chunk and skipped the
    evaluation it crossed; SIGTERM saved nothing."""
    assert threading.current_thread() is threading.main_thread()  # signal handlers live there
    base, out = _baseline_rows(), tmp_path / "run"
    _with_chunk(monkeypatch, _signal_on_call(3, signum))  # the chunk ending at env step 320
    with pytest.raises(Interrupted) as info:
        run_training(SIG_CFG, out, progress=False, log=_quiet)
    assert info.value.signum == signum and info.value.env_steps == 320
    rows = _rows(out)
    assert rows[-1]["env_steps"] == 320 and "eval/return" in rows[-1]
    with Checkpointer(out / "checkpoints", config=config_to_dict(SIG_CFG)) as ckpt:
        assert ckpt.latest_step() == 320  # not a periodic checkpoint: saved for the signal
    monkeypatch.setattr(agents.run, "build", _shared_build)
    run_training(SIG_CFG, out, resume=True, progress=False, log=_quiet)
    assert _rows(out) == base


def test_a_restart_after_a_kill_before_the_first_checkpoint_repeats_no_row(tmp_path):
    """Issue 13.2: a kill before the first checkpoint left rows that the restart wrote again."""
    base, out = _baseline_rows(), tmp_path / "run"
    out.mkdir()
    save_config(out, SIG_CFG)
    killed = [r for r in base if r["env_steps"] <= 320]  # the rows before the kill
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in killed))
    run_training(SIG_CFG, out, resume=True, progress=False, log=_quiet)
    assert _rows(out) == base


def test_overwrite_keeps_the_old_run_until_the_new_one_saved_a_checkpoint(tmp_path, monkeypatch):
    """Issue 13.1: `--overwrite` deleted the old run, then the new one failed: neither was left."""
    out = tmp_path / "run"
    run_training(SIG_CFG, out, progress=False, log=_quiet)
    (out / "notes.txt").write_text("the old run's")
    before = _files(out)

    def fail_second(chunk):
        calls = [0]

        def wrapped(state):
            calls[0] += 1
            if calls[0] == 2:
                raise RuntimeError("boom")
            return chunk(state)

        return wrapped

    _with_chunk(monkeypatch, fail_second)
    with pytest.raises(RuntimeError, match="boom"):
        run_training(SIG_CFG, out, overwrite=True, progress=False, log=_quiet)
    assert _files(out) == before and [p.name for p in tmp_path.iterdir()] == ["run"]

    monkeypatch.setattr(agents.run, "build", _shared_build)
    logged = []
    run_training(SIG_CFG, out, overwrite=True, progress=False, log=logged.append)
    assert any("moved the old run" in line for line in logged)
    assert not (out / "notes.txt").exists() and [p.name for p in tmp_path.iterdir()] == ["run"]
    assert _rows(out) == _baseline_rows()


def test_resuming_a_finished_run_says_it_is_complete(tmp_path):
    """Issue 13.9: resuming a finished run printed `{}`."""
    out, logged = tmp_path / "run", []
    last = run_training(SIG_CFG, out, progress=False, log=_quiet)
    again = run_training(SIG_CFG, out, resume=True, progress=False, log=logged.append)
    assert again == last and again["env_steps"] == SIG_CFG.steps
    assert any("complete" in line for line in logged)


def test_a_failed_checkpoint_write_is_the_error_reported(tmp_path, monkeypatch):
    """Issue 13.8: a full disk during a save ended in 5 chained tracebacks whose last line was
    PIL failing to write curve.png."""
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_space(*args, **kwargs):
        raise RuntimeError("orbax: write failed") from full

    monkeypatch.setattr(Checkpointer, "save", no_space)
    monkeypatch.setattr(MetricsLog, "export", lambda *a, **k: (_ for _ in ()).throw(full))
    with pytest.raises(RunError) as info:
        run_training(SIG_CFG, tmp_path / "run", progress=False, log=_quiet)
    message = str(info.value)
    assert "checkpoint of env step 400" in message and os.strerror(errno.ENOSPC) in message
    assert str(tmp_path / "run" / "checkpoints") in message
    notes = info.value.__notes__  # reported after the error, not raised over it
    assert len(notes) == 1 and "curve.png" in notes[0] and os.strerror(errno.ENOSPC) in notes[0]


def _float_leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def _nan_rewards(state, rows):
    """The state with NaN rewards stored at replay `rows` (bad data: updates sampling them get a
    non-finite loss)."""
    reward = state.replay.data.reward.at[rows].set(jnp.nan)
    return state.replace(replay=state.replay.replace(data=state.replay.data.replace(reward=reward)))


def test_nonfinite_updates_are_skipped_and_counted(trainer):
    """Issue 13.7: non-finite loss or gradients reached the parameters."""
    state, _ = trainer.seed_chunk(trainer.init(jax.random.key(0)))
    state = _nan_rewards(state, (5, 0))  # one stored step, far from the ring buffer's head
    state, m = trainer.train_chunk(state)
    m = jax.device_get(m)
    total, bad = int(m["updates"]), int(m["nonfinite_updates"])
    assert total == CFG.chunk_steps * CFG.agent.updates_per_step and 0 < bad < total
    assert int(state.agent.updates) == total - bad  # only the finite ones were applied
    assert all(np.isfinite(x).all() for x in _float_leaves(state.agent))
    assert np.isfinite(m["loss/model"])  # the mean over the applied updates alone

    before = _float_leaves(state.agent)
    state, m = trainer.train_chunk(_nan_rewards(state, slice(None)))
    m = jax.device_get(m)
    assert int(m["nonfinite_updates"]) == int(m["updates"]) == total
    for a, b in zip(before, _float_leaves(state.agent), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_finite_check_sees_one_bad_element_in_any_float_leaf():
    """`_finite` (the guard of every update): any NaN or infinity in any float leaf, of any float
    dtype, is seen; integer and boolean leaves and an empty tree are finite."""
    from agents.train import _finite

    tree = {
        "w": jnp.ones((3, 4)),
        "b": jnp.zeros(5, jnp.bfloat16),
        "s": jnp.float32(2.0),
        "n": jnp.arange(3),
        "m": jnp.ones(2, bool),
    }
    check = jax.jit(_finite)
    assert bool(check(tree)) and bool(_finite({})) and bool(_finite({"n": jnp.arange(2)}))
    for name, index, bad in [("w", (2, 3), jnp.inf), ("b", 0, jnp.nan), ("s", (), -jnp.inf)]:
        broken = dict(tree, **{name: tree[name].at[index].set(bad)})
        assert not bool(check(broken)), name


def test_a_chunk_of_only_nonfinite_updates_stops_the_run(tmp_path, monkeypatch):
    """Issue 13.7: the run stops with a clear message and keeps its last good checkpoint."""

    def poison_from_fourth(chunk):  # every stored reward NaN from the chunk ending at 400 on
        calls = [0]

        def wrapped(state):
            calls[0] += 1
            return chunk(_nan_rewards(state, slice(None)) if calls[0] >= 4 else state)

        return wrapped

    _with_chunk(monkeypatch, poison_from_fourth)
    out = tmp_path / "run"
    with pytest.raises(RunError, match="non-finite") as info:
        run_training(CFG, out, progress=False, log=_quiet)
    assert "400" in str(info.value) and "env step 320" in str(info.value)
    with Checkpointer(out / "checkpoints", config=config_to_dict(CFG)) as ckpt:
        assert ckpt.latest_step() == 320
    assert _rows(out)[-1]["nonfinite_updates"] == _rows(out)[-1]["updates"] > 0


def test_an_eval_of_a_nonfinite_agent_is_nan_not_zero(trainer):
    """Issue 13.7: an eval of an agent with NaN parameters was logged as a plausible 0.0."""
    state = trainer.init(jax.random.key(0))
    nan = lambda x: x * jnp.nan if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
    result = jax.device_get(trainer.evaluate(jax.tree.map(nan, state.agent), jax.random.key(1)))
    assert np.isnan(result["eval/return"])
    assert np.isfinite(trainer.evaluate(state.agent, jax.random.key(1))["eval/return"])


def test_a_corrupt_manifest_falls_back_quietly(tmp_path, trainer, capfd):
    """Issue 13.8: a corrupt `manifest.ocdbt` fell back correctly but printed 220 "Event loop is
    closed" tracebacks (orbax's reads still in flight after the first one failed)."""
    out = tmp_path / "run"
    run_training(SIG_CFG, out, progress=False, log=_quiet)
    (out / "checkpoints" / "480" / "state" / "manifest.ocdbt").write_bytes(b"garbage" * 9)
    capfd.readouterr()
    with Checkpointer(out / "checkpoints", config=config_to_dict(SIG_CFG)) as ckpt:
        _, meta = ckpt.restore(jax.eval_shape(trainer.init, jax.random.key(0)))
    time.sleep(1.0)  # late callbacks of a failed read would print by now
    err = capfd.readouterr().err
    assert meta["env_steps"] == 400
    assert "Event loop is closed" not in err and "Traceback" not in err
