"""Brax's own model-free agents (SAC, PPO from `brax.training`) as anchors: eval return against env
steps and wall time (compile included) on Brax envs, to set beside our agents at equal env steps.

`brax.training` does not import with the project's jax, so this script makes (once, then reuses) a
separate venv from benchmarks/anchors/requirements.txt (rebuilt when that file changes) and runs
benchmarks/anchors/brax_runner.py in it, one subprocess per (algo, env, settings, seed). Writes
`benchmarks/results/brax_<algo>_<env>_<settings>.{json,md}`; seeds already there from a run with
the same steps, eval interval and requirements are kept (pass --fresh to drop them).

  python benchmarks/brax_baselines.py --algos sac --envs hopper --seeds 0 --settings default,tuned
  python benchmarks/brax_baselines.py --algos sac,ppo --envs hopper --seeds 0,1,2 --steps 100000
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANCHORS = Path(__file__).resolve().parent / "anchors"
REQUIREMENTS = ANCHORS / "requirements.txt"
RUNNER = ANCHORS / "brax_runner.py"
RESULTS = Path(__file__).resolve().parent / "results"
HASH_FILE = "requirements.sha256"  # inside the venv


def load_runner(path: Path = RUNNER):
    """A runner of benchmarks/anchors/ (default brax_runner.py) as a module: runners import their
    venv's packages only where they run, so their helpers load here too."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def requirements_hash(text: str) -> str:
    """sha256 of the requirement lines, comments and blank lines left out: only a change to what
    gets installed rebuilds the venv."""
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return hashlib.sha256("\n".join(x for x in lines if x).encode()).hexdigest()


def venv_is_current(venv: Path, req_hash: str) -> bool:
    stored = venv / HASH_FILE
    return (
        (venv / "bin" / "python").exists()
        and stored.exists()
        and (stored.read_text().strip() == req_hash)
    )


def git_ignores(path: Path, repo: Path = REPO) -> bool:
    """Whether git ignores `path` in `repo` (False without git or outside a work tree)."""
    try:
        r = subprocess.run(
            ["git", "-C", str(repo), "check-ignore", "-q", str(path)], capture_output=True
        )
    except OSError:
        return False
    return r.returncode == 0


def work_dir(repo: Path = REPO, ignored=git_ignores) -> Path:
    """Where the venv and per-run files go: the repo's git-ignored runs/, else the user cache."""
    runs = repo / "runs"
    if ignored(runs / "brax-baselines-venv", repo):
        return runs
    return Path.home() / ".cache" / "worldmodels"


def base_python() -> str:
    """A Python 3.11 to make the venv with: this one when it is 3.11, else python3.11 on PATH."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise SystemExit("no Python 3.11 found for the Brax venv (python3.11 on PATH)")
    return found


BRAX_CHECK = (
    "from brax.training.agents.sac import train; from brax.training.agents.ppo import train"
)


def ensure_venv(venv: Path, requirements: Path = REQUIREMENTS, check: str = BRAX_CHECK) -> Path:
    """The venv's python, the venv (re)built first when missing or made from other requirements;
    `check` (Python source) must run in it before it counts as made."""
    req_hash = requirements_hash(requirements.read_text())
    py = venv / "bin" / "python"
    if venv_is_current(venv, req_hash):
        print(f"[venv] reusing {venv}", flush=True)
        return py
    if venv.exists():
        print(f"[venv] requirements changed: rebuilding {venv}", flush=True)
        shutil.rmtree(venv)
    print(f"[venv] creating {venv} from {requirements}", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    subprocess.run([str(py), "-c", check], check=True)
    (venv / HASH_FILE).write_text(req_hash + "\n")  # last: a half-made venv is rebuilt next time
    return py


def machine_info() -> dict:
    """`agents.bench.machine_info` (CPU model, SIMD flags, cores, our JAX), plus the load average
    when the runs started (other jobs on a 2-core host inflate the wall times)."""
    from agents.bench import machine_info as ours

    return {**ours(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def run_streaming(cmd: list[str], tail_lines: int = 40) -> tuple[int, list[str]]:
    """Run `cmd`, passing its stdout and stderr through as they come; (exit code, stderr tail)."""
    tail = collections.deque(maxlen=tail_lines)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )

    def pump_stderr():
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
            sys.stderr.write(line)
            sys.stderr.flush()

    t = threading.Thread(target=pump_stderr, daemon=True)
    t.start()
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
    rc = proc.wait()
    t.join()
    return rc, list(tail)


def merge_rows(runs: list[dict]) -> list[dict]:
    """One row per env-step count: each seed's eval return and wall time there, and their means."""
    table = collections.defaultdict(dict)
    for run in runs:
        for row in run["rows"]:
            table[row["env_steps"]][run["seed"]] = row
    out = []
    for steps in sorted(table):
        by_seed = table[steps]
        returns = {s: r["eval/episode_reward"] for s, r in sorted(by_seed.items())}
        walls = [r["wall_s"] for r in by_seed.values()]
        out.append(
            {
                "env_steps": steps,
                "returns": returns,
                "mean_return": statistics.fmean(returns.values()),
                "mean_wall_s": statistics.fmean(walls),
            }
        )
    return out


def summarize(runs: list[dict]) -> dict:
    """Last eval return and wall time per seed, and their means over the seeds that finished."""
    per_seed = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        if not run["rows"]:
            continue
        last = run["rows"][-1]
        per_seed[run["seed"]] = {
            "final_env_steps": last["env_steps"],
            "final_return": last["eval/episode_reward"],
            "total_wall_s": run.get("total_wall_s", last["wall_s"]),
            "first_eval_after_training_wall_s": next(
                (r["wall_s"] for r in run["rows"] if r["env_steps"] > 0), None
            ),
            "complete": run.get("complete", True),
        }
    done = [v for v in per_seed.values() if v["complete"]]  # a partial run has no final return
    finals = [v["final_return"] for v in done]
    walls = [v["total_wall_s"] for v in done]
    return {
        "per_seed": per_seed,
        "mean_final_return": statistics.fmean(finals) if finals else None,
        "mean_total_wall_s": statistics.fmean(walls) if walls else None,
    }


def markdown(result: dict) -> str:
    runs = result["runs"]
    seeds = sorted(r["seed"] for r in runs)
    first = runs[0]
    m, v = result["machine"], first["versions"]
    lines = [
        f"# Brax {result['algo'].upper()} on {result['env']} ({first['backend']}), "
        f"settings: {first['settings']}",
        "",
        f"Brax's own `brax.training.agents.{result['algo']}` in its own venv "
        f"(jax {v['jax']}, brax {v['brax']}, Python {v['python']}), {m['cpu']}, {m['kind']}, "
        f"{m['cores']} cores, load average {m.get('loadavg_at_start', ['?'])[0]} at the start "
        "(other jobs on the machine inflate wall times). " + f"{result['date']}.",
        "",
        "Command: " + ", ".join(f"`{c}`" for c in result["commands"]),
        "",
        "Env steps are Brax's count (action_repeat 1; SAC's replay prefill included). Wall time "
        "runs from the call of Brax's `train`: compilation and evaluation included. Eval return: "
        f"mean over {first['hyperparameters']['num_eval_envs']} episodes of "
        f"{first['hyperparameters']['episode_length']} steps.",
        "",
        "| env steps | "
        + " | ".join(
            f"seed {r['seed']}" + ("" if r.get("complete", True) else " (stopped)")
            for r in sorted(runs, key=lambda r: r["seed"])
        )
        + " | mean | mean wall s |",
        "|---:|" + "---:|" * (len(seeds) + 2),
    ]
    for row in merge_rows(runs):
        cells = [f"{row['returns'][s]:.1f}" if s in row["returns"] else "" for s in seeds]
        lines.append(
            f"| {row['env_steps']:,} | " + " | ".join(cells) + f" | {row['mean_return']:.1f} | "
            f"{row['mean_wall_s']:.0f} |"
        )
    s = result["summary"]
    lines += [
        "",
        "| seed | last env steps | last return | wall s (total) | finished |",
        "|---:|---:|---:|---:|---|",
    ]
    for seed, v in s["per_seed"].items():
        lines.append(
            f"| {seed} | {v['final_env_steps']:,} | {v['final_return']:.1f} | "
            f"{v['total_wall_s']:.0f} | {'yes' if v['complete'] else 'no: stopped'} |"
        )
    if s["mean_final_return"] is not None:
        lines += [
            "",
            f"Mean final return {s['mean_final_return']:.1f}; mean wall time "
            f"{s['mean_total_wall_s']:.0f} s (seeds that finished).",
        ]
    hp = ", ".join(f"{k}={val}" for k, val in first["hyperparameters"].items() if k != "seed")
    lines += ["", f"Hyper-parameters: {hp}."]
    notes = {k: val for k, val in first.get("notes", {}).items() if k != "expected_eval_steps"}
    if notes:
        lines += ["", f"Changes from the settings: `{json.dumps(notes)}`."]
    if result.get("failures"):
        lines += ["", "Failed: " + ", ".join(f"seed {f['seed']}" for f in result["failures"])]
    return "\n".join(lines) + "\n"


def write_results(
    results: Path, key: str, header: dict, runs: dict, failures: list, commands: list, machine
) -> dict:
    """Write `<key>.json` (every seed's rows, the summary, the machine) and `<key>.md`."""
    result = {
        **header,
        "settings": runs[min(runs)]["settings"],
        "date": datetime.date.today().isoformat(),
        "commands": commands,
        "machine": machine,
        "runs": [runs[s] for s in sorted(runs)],
        "failures": failures,
    }
    result["summary"] = summarize(result["runs"])
    result["table"] = merge_rows(result["runs"])
    (results / f"{key}.json").write_text(json.dumps(result, indent=1) + "\n")
    (results / f"{key}.md").write_text(markdown(result))
    print(f"[brax_baselines] wrote {results / key}.json and .md", flush=True)
    return result


def result_key(algo: str, env: str, settings: str) -> str:
    return f"brax_{algo}_{env}_{settings}"


def compatible(old: dict, new: dict) -> bool:
    """Whether the seeds of an earlier results file can stand beside this invocation's."""
    keys = ("algo", "env", "steps", "eval_every", "requirements_sha256", "backend")
    return all(old.get(k) == new.get(k) for k in keys)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="sac")
    parser.add_argument("--envs", default="hopper")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--settings", default="default")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--backend", default="positional")
    parser.add_argument("--episode-length", type=int, default=1000)
    parser.add_argument("--num-eval-envs", type=int, default=16)
    parser.add_argument("--venv", type=Path, default=None, help="default: <work dir>/...-venv")
    parser.add_argument("--fresh", action="store_true", help="drop seeds from earlier runs")
    args = parser.parse_args(argv)
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
    algos, envs, settings = split(args.algos), split(args.envs), split(args.settings)
    seeds = [int(s) for s in split(args.seeds)]
    command = "python benchmarks/brax_baselines.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )

    runner = load_runner()
    work = work_dir()
    venv = args.venv or work / "brax-baselines-venv"
    py = ensure_venv(venv)
    req_hash = requirements_hash(REQUIREMENTS.read_text())
    out_dir = work / "brax-baselines"
    out_dir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = machine_info()

    jobs = []
    for algo in algos:
        for env in envs:
            for setting in settings:
                label, _ = runner.lookup_settings(algo, env, setting)
                if label == runner.FALLBACK_LABEL and "default" in settings:
                    print(f"[brax_baselines] {algo} {env}: no tuned settings; 'default' covers it")
                    continue
                jobs.append((algo, env, setting))

    failed = []
    n_runs, i = len(jobs) * len(seeds), 0
    for algo, env, setting in jobs:
        key = result_key(algo, env, setting)
        header = {
            "algo": algo,
            "env": env,
            "backend": args.backend,
            "requested_settings": setting,
            "steps": args.steps,
            "eval_every": args.eval_every,
            "requirements_sha256": req_hash,
        }
        json_path = RESULTS / f"{key}.json"
        runs, commands, failures = {}, [], []
        if json_path.exists() and not args.fresh:
            old = json.loads(json_path.read_text())
            if compatible(old, header):
                runs = {r["seed"]: r for r in old["runs"] if r["seed"] not in seeds}
                commands = [c for c in old.get("commands", []) if runs]
        for seed in seeds:
            i += 1
            run_json = out_dir / f"{key}_seed{seed}.json"
            run_json.unlink(missing_ok=True)
            cmd = [
                str(py),
                str(RUNNER),
                f"--algo={algo}",
                f"--env={env}",
                f"--steps={args.steps}",
                f"--seed={seed}",
                f"--settings={setting}",
                f"--episode-length={args.episode_length}",
                f"--backend={args.backend}",
                f"--eval-every={args.eval_every}",
                f"--num-eval-envs={args.num_eval_envs}",
                f"--out={run_json}",
            ]
            print(f"[brax_baselines] run {i}/{n_runs}: {algo} {env} {setting} seed {seed}")
            t = time.time()
            rc, tail = run_streaming(cmd)
            wall = time.time() - t
            run = json.loads(run_json.read_text()) if run_json.exists() else None
            if rc != 0 or run is None or not run.get("complete"):
                print(
                    f"[brax_baselines] FAILED {algo} {env} {setting} seed {seed} (exit {rc}, "
                    f"{wall:.0f} s); stderr tail:\n  " + "\n  ".join(tail),
                    file=sys.stderr,
                    flush=True,
                )
                failures.append({"seed": seed, "exit_code": rc, "stderr_tail": tail})
                failed.append((algo, env, setting, seed))
                if run is None or not run["rows"]:
                    continue
                # The evaluations it made before stopping, kept and marked as a partial run.
                print(f"[brax_baselines] keeping its {len(run['rows'])} evaluations as partial")
                run["complete"] = False
            run["subprocess_wall_s"] = round(wall, 1)
            run["machine"] = machine
            run["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            runs[seed] = run
            if not run["complete"]:
                continue
            last = run["rows"][-1]
            print(
                f"[brax_baselines] {algo} {env} {setting} seed {seed}: final return "
                f"{last['eval/episode_reward']:.1f} at {last['env_steps']:,} env steps, "
                f"{run['total_wall_s']:.0f} s",
                flush=True,
            )
        if not runs:
            continue
        commands.append(command)
        write_results(RESULTS, key, header, runs, failures, commands, machine)

    if failed:
        print(f"[brax_baselines] {len(failed)} run(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
