"""Runs `wm` on bad inputs and faults, and tables what a user sees and the exit code.

Every case is a real `wm` process in a fresh directory (tiny runs where a run is needed, sharing
one JAX compilation cache). Writes `benchmarks/results/bad_inputs.{json,md}`.

  python benchmarks/bad_inputs.py                 # every case (~10 min on 2 cores)
  python benchmarks/bad_inputs.py --groups parse,dirs   # without the runs (~2 min)

The full-disk case mounts a 400 KiB tmpfs (needs root); it is skipped where mounting fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))
# A run that compiles in about a minute; with --steps 480: checkpoints at 160, 320, 480.
TINY = (
    "--num-envs 2 --episode-length 60 --seed-steps 80 --chunk-steps 20 "
    "--replay-capacity 400 --eval-every 160 --eval-episodes 2 --checkpoint-every 160 "
    "--model.latent-dim 16 --model.mlp-dim 32 --model.enc-dim 32 "
    "--model.num-bins 21 --planner.num-samples 16 --planner.num-elites 4 "
    "--planner.num-pi-trajs 4 --planner.iterations 2 --batch-size 16 "
    "--no-progress"
).split()


@dataclasses.dataclass
class Result:
    name: str
    command: str
    code: int
    seen: str  # the lines the user sees, shortened
    stderr_lines: int
    check: str  # what else was verified (files kept, rows, ...)
    ok: bool


def wm(args, cwd, env, *, signal_after=None, timeout=900):
    """Runs `wm ARGS` in `cwd`; with `signal_after=(seconds, sig)` sends `sig` once the first
    metrics row exists plus `seconds`. Returns (exit code, stdout, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if signal_after is not None:
        delay, sig, rows = signal_after
        start = time.time()
        while not rows.exists() and proc.poll() is None and time.time() - start < timeout:
            time.sleep(0.2)
        time.sleep(delay)
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def seen(err: str, out: str = "") -> str:
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("run directory:")]
    boxed = [line.strip("│ ").strip() for line in lines if line.startswith("│")]
    boxed = [line for line in boxed if line.strip("─")]  # tyro's rules between box sections
    text = " / ".join(boxed[:2]) if boxed else " / ".join(lines[-2:])
    said = [line for line in out.strip().splitlines() if line and not line.startswith("{")]
    if said and (not text or text.startswith("warning:") is False and "env step/s" in text):
        text = "stdout: " + said[0]
    return text[:220]


def files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def user_files(path: Path) -> list[str]:
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "data").mkdir(exist_ok=True)
    (path / "data" / "x.csv").write_text("1,2\n")
    return files(path)


def fake_run(path: Path, **overrides) -> list[str]:
    from agents.config import TrainConfig
    from agents.run import config_to_dict

    path.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(TrainConfig(), **overrides)
    (path / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    (path / "metrics.jsonl").write_text('{"env_steps": 200, "wall_s": 1.0}\n')
    return files(path)


def corrupt(ckpts: Path, steps) -> None:
    for s in steps:
        for p in (ckpts / str(s)).rglob("manifest.ocdbt"):
            p.write_bytes(b"garbage")


class Cases:
    """Each method `case_*` sets up a directory, runs `wm`, and returns a Result."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self._trained = None

    def run(self, name, args, *, cwd=None, check="", ok=None, expect=(2,), **kw):
        cwd = cwd or self.dir(name)
        code, out, err = wm(args, cwd, self.env, **kw)
        self.last_out, self.last_err = out, err  # for `ok` checks of what was printed
        lines = len(err.strip().splitlines())
        good = code in expect and "Traceback" not in err and (ok is None or ok())
        command = "wm " + " ".join(str(a).replace(str(self.root), "$TMP") for a in args)
        text = seen(err, out).replace(str(self.root), "$TMP")
        return Result(name, command, code, text, lines, check, bool(good))

    def dir(self, name) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def trained(self) -> Path:
        """A finished tiny run, trained once and copied by the cases that need one."""
        if self._trained is None:
            self._trained = self.root / "trained"
            args = ["train", "--out", self._trained, "--steps", "480", *TINY]
            code, _, err = wm(args, self.root, self.env)
            if code != 0:
                raise RuntimeError(f"the tiny run failed ({code}): {err[-2000:]}")
        return self._trained

    def copy_trained(self, name) -> Path:
        dst = self.dir(name) / "run"
        shutil.copytree(self.trained(), dst)
        return dst


def parse_cases(c: Cases):
    """Bad flags and configs: refused by the parser or a config's validation, exit 2."""
    flags = [
        ("steps_not_a_number", ["--steps", "abc"]),
        ("steps_zero", ["--steps", "0"]),
        ("steps_float", ["--steps", "1.5"]),
        ("unknown_env", ["--env", "cartpole"]),
        ("unknown_agent", ["foo"]),
        ("old_agent_flag", ["--agent", "dreamer"]),
        ("unknown_flag", ["--bogus-flag", "1"]),
        ("num_envs_zero", ["--num-envs", "0"]),
        ("lr_nan", ["--lr", "nan"]),
        ("lr_inf", ["--lr", "inf"]),
        ("lr_negative", ["--lr", "-1e-3"]),
        ("grad_clip_negative", ["--grad-clip-norm", "-1"]),
        ("enc_lr_scale_negative", ["--enc-lr-scale", "-0.3"]),
        (
            "discount_min_above_max",
            ["--discount-min", "0.99", "--discount-max", "0.9"],
        ),
        ("loss_coef_negative", ["--model.reward-coef", "-1"]),
        ("tau_above_one", ["--tau", "2"]),
        ("elites_above_samples", ["--planner.num-elites", "1000"]),
        ("latent_not_multiple_of_simnorm", ["--model.latent-dim", "30"]),
        ("temperature_zero", ["--planner.temperature", "0"]),
        ("dreamer_lr_nan", ["dreamer", "--model-lr", "nan"]),
        ("dreamer_lam_above_one", ["dreamer", "--lam", "1.5"]),
        ("pixels_with_tdmpc2", ["--obs", "pixels"]),
        ("pixels_bad_image_size", ["dreamer", "--obs", "pixels", "--image-size", "50"]),
        ("replay_too_small", ["--replay-capacity", "3"]),
    ]
    for name, args in flags:
        d = c.dir(name)
        empty = lambda d=d: not files(d)  # noqa: E731
        yield c.run(name, ["train", *args], cwd=d, check="nothing written", ok=empty)
    yield c.run("no_subcommand", [], check="usage shown")
    yield c.run("unknown_subcommand", ["frobnicate"])
    yield c.run("eval_without_run", ["eval"])


def dir_cases(c: Cases):
    """Run directories: never delete what is not a run, refuse before compiling."""
    d = c.dir("overwrite_user_dir") / "mine"
    before = user_files(d)
    yield c.run(
        "overwrite_user_dir_bad_backend",
        ["train", "--out", d, "--overwrite", "--backend", "bogus"],
        check="user files kept",
        ok=lambda: files(d) == before,
    )
    d = c.dir("overwrite_cwd_user_files")
    before = user_files(d)
    yield c.run(
        "overwrite_cwd_user_files", ["train", "--out", ".", "--overwrite"], cwd=d,
        check="user files kept", ok=lambda: files(d) == before,
    )  # fmt: skip
    d = c.dir("overwrite_cwd_run")
    before = fake_run(d)
    yield c.run(
        "overwrite_cwd_run", ["train", "--out", ".", "--overwrite"], cwd=d,
        check="run kept (working directory protected)", ok=lambda: files(d) == before,
    )  # fmt: skip
    d = c.dir("overwrite_run_bad_backend") / "run"
    before = fake_run(d)
    yield c.run(
        "overwrite_run_bad_backend",
        ["train", "--out", d, "--overwrite", "--backend", "bogus"],
        check="old run kept",
        ok=lambda: files(d) == before,
    )
    d = c.dir("bad_backend_new_dir") / "new"
    yield c.run(
        "bad_backend_new_dir", ["train", "--out", d, "--backend", "bogus"],
        check="no directory left behind", ok=lambda: not d.exists(),
    )  # fmt: skip
    d = c.dir("existing_run") / "run"
    before = fake_run(d)
    yield c.run(
        "existing_run", ["train", "--out", d], check="run kept", ok=lambda: files(d) == before
    )
    f = c.dir("out_is_file") / "f"
    f.write_text("x")
    yield c.run(
        "out_is_file", ["train", "--out", f], check="file kept", ok=lambda: f.read_text() == "x"
    )
    yield c.run("out_parent_is_file", ["train", "--out", f / "run"], check="file kept")
    d = c.dir("resume")
    fake_run(d / "run")
    yield c.run("resume_missing", ["train", "--resume", d / "nope"])
    yield c.run(
        "resume_with_other_out", ["train", "--resume", d / "run", "--out", d / "other"],
        check="no other dir", ok=lambda: not (d / "other").exists(),
    )  # fmt: skip
    yield c.run("resume_with_overwrite", ["train", "--resume", d / "run", "--overwrite"])
    yield c.run("resume_changed_num_envs", ["train", "--resume", d / "run", "--num-envs", "16"])
    yield c.run(
        "resume_changed_sub_field",
        ["train", "--resume", d / "run", "--model.latent-dim", "32"],
    )
    yield c.run("eval_missing_run", ["eval", d / "nope"])
    yield c.run(
        "eval_no_checkpoint", ["eval", d / "run"], check="no checkpoints/ created",
        ok=lambda: not (d / "run" / "checkpoints").exists(),
    )  # fmt: skip
    yield c.run("eval_zero_episodes", ["eval", d / "run", "--episodes", "0"])
    d = c.dir("broken_json") / "run"
    fake_run(d)
    (d / "config.json").write_text('{"env": "hopper",')
    yield c.run("resume_broken_config_json", ["train", "--resume", d])
    d = c.dir("missing_section") / "run"
    fake_run(d)
    data = json.loads((d / "config.json").read_text())
    from agents.config import TrainConfig

    del data["agent"][TrainConfig().agent.name]["model"]
    (d / "config.json").write_text(json.dumps(data))
    yield c.run("resume_config_missing_section", ["train", "--resume", d])


def run_cases(c: Cases):
    """Faults of real (tiny) runs: signals, corrupt checkpoints, a full disk, finished runs."""
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        name = f"{sig.name.lower()}_mid_run"
        d = c.dir(name) / "run"
        rows = d / "metrics.jsonl"
        args = ["train", "--out", d, "--steps", "8000", *TINY]  # still running when signalled
        res = c.run(name, args, signal_after=(0.5, sig, rows),
                    expect=(code,), check="checkpoint at the last row")  # fmt: skip
        from_ckpt = sorted(int(p.name) for p in (d / "checkpoints").iterdir() if p.name.isdigit())
        last_row = json.loads(rows.read_text().splitlines()[-1])["env_steps"]
        res.ok = res.ok and bool(from_ckpt) and from_ckpt[-1] == last_row
        res.check = f"checkpoint {from_ckpt[-1] if from_ckpt else None} = last row {last_row}"
        yield res
        more = str((from_ckpt[-1] if from_ckpt else 0) + 160)  # two more chunks
        args = ["train", "--resume", d, "--steps", more, "--no-progress"]
        again = c.run(f"{name}_then_resume", args, expect=(0,))
        n = len(rows.read_text().splitlines())
        again.check = f"{n} metrics rows, no duplicate"
        steps = [json.loads(line)["env_steps"] for line in rows.read_text().splitlines()]
        again.ok = again.ok and steps == sorted(set(steps))
        yield again
    d = c.copy_trained("finished")
    yield c.run("resume_finished_run", ["train", "--resume", d, "--no-progress"], expect=(0,),
                check="says complete", ok=lambda: "is complete" in c.last_out)  # fmt: skip
    d = c.copy_trained("corrupt_latest")
    corrupt(d / "checkpoints", [480])
    yield c.run(
        "corrupt_latest_checkpoint_eval", ["eval", d], expect=(0,),
        check="falls back to step 320",
        ok=lambda: json.loads((d / "eval.json").read_text())["env_steps"] == 320,
    )  # fmt: skip
    d = c.copy_trained("corrupt_both")
    corrupt(d / "checkpoints", [320, 480])
    yield c.run("corrupt_all_checkpoints_eval", ["eval", d], expect=(1,))
    d = c.copy_trained("junk")
    (d / "checkpoints" / "notes.txt").write_text("mine")
    (d / "checkpoints" / "999").mkdir()
    yield c.run("junk_in_checkpoint_dir_eval", ["eval", d], expect=(0,), check="junk ignored")
    yield from full_disk_case(c)


def full_disk_case(c: Cases):
    mnt = c.dir("full_disk_mount")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        print(f"full-disk case skipped: {mounted.stderr.decode().strip()}", file=sys.stderr)
        return
    try:
        # Where the disk fills decides which write fails first: orbax's metadata (empty disk) or
        # tensorstore's array data (a disk already 120 KB full); each must be one error line.
        for name, fill in (("disk_full_during_checkpoint", 0), ("disk_full_in_array_write", 120)):
            shutil.rmtree(mnt / "run", ignore_errors=True)
            (mnt / "fill").write_bytes(b"\0" * fill * 1000)
            args = ["train", "--out", mnt / "run", "--steps", "480", *TINY]
            yield c.run(name, args, expect=(1,), check="one error line: no space, which file",
                        ok=lambda: _one_disk_error(c.last_err))  # fmt: skip
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _one_disk_error(err: str) -> bool:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("run directory:")]
    first = lines[0] if lines else ""
    notes = all(ln.startswith("  also failed:") for ln in lines[1:])
    return first.startswith("error: could not write the checkpoint") and (
        "No space left on device" in first and notes and len(first) < 400
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="parse,dirs,runs", help="which groups of cases")
    args = parser.parse_args()
    groups = {"parse": parse_cases, "dirs": dir_cases, "runs": run_cases}
    chosen = [groups[g] for g in args.groups.split(",")]
    root = Path(tempfile.mkdtemp(prefix="wm-bad-inputs-"))
    env = {**os.environ, "WM_JAX_CACHE": str(root / "jax-cache"), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = str(REPO)
    cases = Cases(root, env)
    results = []
    try:
        for group in chosen:
            for res in group(cases):
                results.append(res)
                print(
                    f"{'ok ' if res.ok else 'BAD'} {res.code:>3} {res.name}: {res.seen}", flush=True
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write(results)
    bad = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


def write(results):
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "python": sys.version.split()[0],
    }
    payload = {**meta, "cases": [dataclasses.asdict(r) for r in results]}
    (RESULTS / "bad_inputs.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Bad inputs and faults: what `wm` shows, and its exit code",
        "",
        f"`python benchmarks/bad_inputs.py` ({meta['date']}, {meta['machine']}): each row is a",
        "real `wm` process. Exit codes: 2 bad command line, config or directory (nothing ran), 1 a",
        "failure while running, 130/143 SIGINT/SIGTERM after saving. `ok` means the exit code was",
        "the expected one, no traceback was printed, and the check held.",
        "",
        "| case | command | exit | stderr lines | what the user sees | check | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        shown = r.seen.replace("|", "\\|")
        command = r.command.replace("|", "\\|")
        if len(command) > 90:
            command = command[:87] + "..."
        lines.append(
            f"| {r.name} | `{command}` | {r.code} | {r.stderr_lines} | {shown} | {r.check} | "
            f"{'yes' if r.ok else '**no**'} |"
        )
    (RESULTS / "bad_inputs.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
