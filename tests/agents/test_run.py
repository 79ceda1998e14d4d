"""What a user sees of a run: the compile cache it shares with `wm`, the progress bar, the summary,
metrics files rewritten at every evaluation, TensorBoard events, and metrics absent (not 0) when
nothing happened."""

import contextlib
import csv
import io
import json
import math
import struct

import jax
import numpy as np
import pytest
from _tiny_run import TINY_RUN

import agents.run
from agents.cli import main
from agents.compile_cache import enable_compile_cache
from agents.config import TrainConfig
from agents.metrics import MetricsLog, drop_absent, plotted_rows, reduce_seeds, summarize
from agents.progress import Progress

CFG = TINY_RUN  # evaluations at 160, 320 and 480 (see _tiny_run.py)


def _table(path):
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run of CFG with the progress bar (its stream captured) and TensorBoard on, and what
    the run directory held at the start of each train chunk."""
    out = tmp_path_factory.mktemp("run") / "run"
    spec, agent, trainer = agents.run.build(CFG)
    seen = []

    def chunk(state):
        csv_path, png = out / "metrics.csv", out / "curve.png"
        steps = [int(r["env_steps"]) for r in _table(csv_path)] if csv_path.exists() else None
        seen.append((steps, png.exists()))
        return trainer.train_chunk(state)

    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(stream):
        mp.setattr(
            agents.run, "build", lambda cfg: (spec, agent, trainer._replace(train_chunk=chunk))
        )
        agents.run.run_training(CFG, out, tensorboard=True, log=lambda *_: None)
    return out, stream.getvalue(), seen


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


def test_a_run_whose_steps_fall_inside_a_chunk_says_where_it_ends(monkeypatch, tmp_path):
    """A run trains whole chunks: steps=2000 after a 1000-step seed phase, in chunks of 2000 env
    steps, ended at 3000 while the progress bar said 2000/2000, with nothing logged."""
    cfg = TrainConfig(steps=2_000, seed_steps=1_000, chunk_steps=250)  # 250 x 4 envs x 2
    assert (cfg.seed_env_steps, cfg.num_chunks, cfg.final_env_steps) == (1_000, 1, 3_000)
    aligned = TrainConfig(steps=3_000, seed_steps=1_000, chunk_steps=250)
    assert aligned.final_env_steps == 3_000 and TrainConfig(seed_steps=0).final_env_steps == 30_000

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # after the checks and the note, before anything is written

    monkeypatch.setattr(agents.run, "create_run", stop)
    logs = []
    for config in (cfg, aligned):
        logs.append([])
        with pytest.raises(KeyboardInterrupt):
            agents.run.run_training(config, tmp_path / "run", progress=False, log=logs[-1].append)
    assert len(logs[0]) == 1 and logs[1] == []
    assert "steps=2000" in logs[0][0] and "ends at 3000 env steps" in logs[0][0]
    assert "a seed phase of 1000 and 1 chunk of 2000 =" in logs[0][0]


NAN = float("nan")


def test_what_did_not_happen_in_a_chunk_is_absent_not_zero():
    """Issue 16.5: `train/return` was logged as 0.0 for chunks where no episode ended."""
    quiet = {"train/return": 0.0, "train/episodes": 0, "updates": 0, "nonfinite_updates": 0}
    assert drop_absent({**quiet, "loss/model": NAN}) == {
        "train/episodes": 0,
        "updates": 0,
        "nonfinite_updates": 0,
    }
    ran = drop_absent({**quiet, "train/episodes": 2, "train/return": 7.0, "updates": 4})
    assert ran["train/return"] == 7.0
    bad = drop_absent({**quiet, "updates": 4, "nonfinite_updates": 4, "loss/model": NAN})
    assert math.isnan(bad["loss/model"])  # updates ran and were non-finite: shown, not hidden


def test_a_seed_without_an_episode_is_left_out_of_the_mean():
    m = {
        "train/return": np.array([0.0, 6.0, 0.0]),
        "train/episodes": np.array([0, 2, 1]),
        "updates": np.array([0, 4, 4]),
        "nonfinite_updates": np.zeros(3, int),
        "loss/model": np.array([NAN, 1.0, 3.0]),
    }
    row = reduce_seeds(drop_absent(m), 3)
    assert row["train/return"] == 3.0 and row["train/return_seeds"] == [None, 6.0, 0.0]
    assert row["train/return_seeds_min"] == 0.0 and row["loss/model"] == 2.0
    assert row["train/episodes"] == 3 and row["updates"] == 8
    zeros, nans = np.zeros(3, int), np.full(3, NAN)
    none = drop_absent({**m, "train/episodes": zeros, "updates": zeros, "loss/model": nans})
    row = reduce_seeds(none, 3)
    assert "train/return" not in row and "train/return_seeds" not in row
    assert "loss/model" not in row


def test_absent_metrics_are_empty_cells_and_not_plotted(tmp_path):
    log = MetricsLog(tmp_path)
    log.write(80, 1.0, {"train/episodes": 0})
    log.write(160, 2.0, {"train/episodes": 1, "train/return": 0.0, "eval/return": NAN})
    log.write(240, 3.0, {"train/episodes": 1, "train/return": 5.0, "eval/return": 9.0})
    log.export(title="t")
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["train/return"] for r in rows] == ["", "0.0", "5.0"]
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert [r["env_steps"] for r in plotted_rows(log.rows(), "train/return")] == [160, 240]
    assert [r["env_steps"] for r in plotted_rows(log.rows(), "eval/return")] == [240]


def test_metrics_csv_and_curve_are_rewritten_at_every_evaluation(run):
    """Issue 16.3: metrics.csv and curve.png were written only when the run ended."""
    out, _, seen = run
    assert seen[0] == (None, False)  # env step 80: nothing evaluated yet
    assert seen[1] == ([80, 160], True)  # after the evaluation at 160, with the rows so far
    assert seen[3] == ([80, 160, 240, 320], True)
    assert [int(r["env_steps"]) for r in _table(out / "metrics.csv")][-1] == CFG.steps


def test_the_progress_bar_names_the_compile_and_shows_one_rate(run):
    """Issue 16.1: the bar sat at 0 with no word while the first chunk compiled, and showed
    tqdm's it/s beside the loop's own rate."""
    _, text, _ = run
    assert "compiling train chunk" in text and "compiling evaluation" in text
    assert "compiling prefill chunk" in text
    assert "env steps/s" in text and "it/s" not in text and "ETA" in text


def test_the_rate_and_eta_leave_out_the_prefill_and_compiles():
    bar = Progress(1000, enabled=True, file=io.StringIO())
    try:
        bar.advance(200, 0.01, rate=False)  # the prefill: fast
        assert bar.postfix() == ""
        bar.advance(100, 50.0, rate=False)  # a chunk that compiled
        bar.advance(100, 1.0, rate=True, eval_return=12.3)
        assert bar.postfix() == "100 env steps/s, ETA 00:06, eval 12"
    finally:
        bar.close()


def _tensorboard_scalars(run_dir):
    """(tag, step, value) of every scalar in the run's event files (TFRecords of Event protos)."""
    from tensorboardX.proto import event_pb2

    found = []
    for path in run_dir.glob("events.out.tfevents.*"):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            found += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
            i += 16 + n
    return found


def test_tensorboard_events_hold_the_metrics(run):
    out, _, _ = run
    scalars = _tensorboard_scalars(out)
    rows = {r["env_steps"]: r for r in MetricsLog(out).rows()}
    evals = [(step, value) for tag, step, value in scalars if tag == "eval/return"]
    assert [step for step, _ in evals] == [160, 320, 480]
    assert all(value == pytest.approx(rows[step]["eval/return"]) for step, value in evals)
    assert any(tag == "loss/model" for tag, _, _ in scalars)


def test_rows_have_train_return_only_where_an_episode_ended(run):
    rows = MetricsLog(run[0]).rows()
    assert all(("train/return" in r) == (r["train/episodes"] > 0) for r in rows)


def test_the_summary_is_a_few_lines_naming_the_files(run):
    out = run[0]
    rows = MetricsLog(out).rows()
    text = summarize(rows, out, title="tdmpc2 on inverted_pendulum")
    lines = text.splitlines()
    assert 3 <= len(lines) <= 5 and all(len(line) < 160 for line in lines)
    best = max(r["eval/return"] for r in rows if "eval/return" in r)
    assert f"final {rows[-1]['eval/return']:.1f} at env step 480" in text
    assert f"best {best:.1f}" in text and "env steps/s" in text
    assert str(out / "metrics.csv") in text and str(out / "curve.png") in text
    assert str(out / "checkpoints") in text and "latest env step 480" in text


def test_wm_train_ends_with_the_summary_not_a_json_row(monkeypatch, tmp_path, capsys):
    """Issue 16.2: `wm train` ended by printing a 750-character JSON row."""
    rows = [
        {"env_steps": 80, "wall_s": 1.0, "train/episodes": 0},
        {"env_steps": 160, "wall_s": 4.0, "eval/return": 50.0, "loss/model": 1.0},
    ]

    def fake_run(cfg, out, **kwargs):
        out.mkdir()
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert kwargs["tensorboard"] is True
        return rows[-1]

    monkeypatch.setattr(agents.run, "run_training", fake_run)
    main(["train", "--out", str(tmp_path / "r"), "--tensorboard"])
    out = capsys.readouterr().out
    assert not out.lstrip().startswith("{") and "final 50.0 at env step 160" in out
    assert "40 env steps/s" in out and len(out.splitlines()) <= 5


def test_wm_eval_video_writes_a_gif_of_the_requested_steps(run, tmp_path, capsys):
    """Issue 16.7: there was no way to watch a trained policy act."""
    from PIL import Image

    path = tmp_path / "out" / "policy.gif"
    main(["eval", str(run[0]), "--video", str(path), "--video-steps", "7", "--video-size", "24"])
    assert "7 frames" in capsys.readouterr().out
    with Image.open(path) as gif:
        assert gif.n_frames == 7 and gif.size == (24, 24)
        gif.seek(3)
        assert gif.info["duration"] == 40  # ms: dt 0.02 s x action repeat 2, real time


def test_a_video_format_that_cannot_be_written_is_refused_first(monkeypatch, tmp_path, capsys):
    import agents.video

    monkeypatch.setattr(agents.video.shutil, "which", lambda name: None)
    for name, reason in (("x.mp4", "ffmpeg"), ("x.avi", ".gif")):
        with pytest.raises(SystemExit) as exc:  # before the (missing) run is looked at
            main(["eval", str(tmp_path / "no-run"), "--video", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and reason in err and "no-run" not in err
