"""MJX (MuJoCo Playground's DM Control port, what `wm train --env dmc:...` steps) against DeepMind's
own dm_control (C MuJoCo): the same random action sequences, from the same start states, on both.

For each task and episode e, Playground resets (key e) and steps uniform random actions in
[-1, 1] (numpy seed 0) through `agents.envs.make_env` (action repeat 1, no episode end within
the `--steps`); dm_control, in its own venv (benchmarks/anchors/dm_control_requirements.txt,
made once by this script), replays the same actions twice: from Playground's start state
(qpos, qvel), and from its own reset (`random=e`). Reported per task: the random policy's
episode returns on each side, how closely the per-step rewards agree from the same start (the
physics and reward functions, before chaos separates the trajectories), and the physics options
on each side. Writes `benchmarks/results/dmc_physics_cpu_<kind>.{json,md}`.

  python benchmarks/dmc_physics.py                      # 4 tasks x 8 episodes x 1000 steps
  python benchmarks/dmc_physics.py --tasks cheetah-run --episodes 2 --steps 100
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import brax_baselines as bb  # noqa: E402  (venv helpers)

REQUIREMENTS = HERE / "anchors" / "dm_control_requirements.txt"
RUNNER = HERE / "anchors" / "dm_control_runner.py"
CHECK = "from dm_control import suite; suite.load('cheetah', 'run')"
TASKS = ("cheetah-run", "walker-walk", "walker-run", "hopper-hop")
TOLERANCE = 0.01  # per-step reward difference counted as "apart" (DMC rewards are in [0, 1])
QPOS_TOLERANCE = 0.1  # joint-position difference (m or rad) counted as "apart"


def mjx_rollouts(task: str, episodes: int, steps: int, seed: int = 0) -> dict:
    """Playground's side: start states, the actions, and the per-step rewards [E, T]."""
    import jax

    from agents.envs import make_env

    env, spec = make_env(f"dmc:{task}", num_envs=episodes, episode_length=steps + 1)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, (steps, episodes, spec.action_size)).astype(np.float32)

    @jax.jit
    def run(key, actions):
        state = env.reset(key)

        def body(s, a):
            s = env.step(s, a)
            return s, (s.reward, s.pipeline_state.qpos)

        _, (rewards, path) = jax.lax.scan(body, state, actions)
        return state.pipeline_state.qpos, state.pipeline_state.qvel, rewards, path

    qpos, qvel, rewards, path = jax.device_get(run(jax.random.key(seed), actions))
    return {
        "qpos": np.asarray(qpos, np.float64),
        "qvel": np.asarray(qvel, np.float64),
        "actions": actions.transpose(1, 0, 2),  # [E, T, A]
        "rewards": np.asarray(rewards).T,  # [E, T]
        "path": np.asarray(path).transpose(1, 0, 2),  # joint positions after each step [E, T, nq]
        "options": _playground_options(task),
    }


def _playground_options(task: str) -> dict:
    from agents import dmc

    core = dmc.load(f"dmc:{task}")._env
    return bb.load_runner(RUNNER).physics_options(core.mj_model, core.dt)


def first_apart(a: np.ndarray, b: np.ndarray, tol: float = TOLERANCE) -> int:
    """The first step (0-based) at which |a - b| > tol (in any trailing coordinate), or len(a)
    if never."""
    gap = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    apart = np.flatnonzero(gap.reshape(len(gap), -1).max(axis=1) > tol)
    return int(apart[0]) if apart.size else len(a)


def compare(mjx, same, own, mjx_path=None, same_path=None) -> dict:
    """Summary of per-step rewards [E, T] on the three sides, and of the joint positions
    [E, T, nq] from the same start when given."""
    mjx, same, own = (np.asarray(x, np.float64) for x in (mjx, same, own))
    t = mjx.shape[1]

    def stats(r):
        returns = r.sum(axis=1)
        return {
            "returns": returns.round(3).tolist(),
            "mean": float(returns.mean()),
            "std": float(returns.std(ddof=1)) if len(returns) > 1 else 0.0,
        }

    gap = np.abs(mjx - same)
    windows = {f"1-{n}": gap[:, :n].mean() for n in (10, 100) if n < t}
    windows[f"1-{t}"] = gap.mean()
    return {
        "mjx": stats(mjx),
        "dm_control_same_start": stats(same),
        "dm_control_own_reset": stats(own),
        "mean_abs_reward_gap": {k: float(v) for k, v in windows.items()},
        "steps_until_apart": [first_apart(a, b) for a, b in zip(mjx, same, strict=True)],
        "steps_until_qpos_apart": None
        if mjx_path is None
        else [first_apart(a, b, QPOS_TOLERANCE) for a, b in zip(mjx_path, same_path, strict=True)],
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"# DM Control on MJX (Playground) vs dm_control ({m['cpu']}, {m['cores']} cores)",
        "",
        f"`{result['command']}` ({result['date']}). Playground {result['versions']['playground']} "
        f"(MJX, `impl='jax'`, mujoco {result['versions']['mujoco']}) against dm_control "
        f"{result['versions']['dm_control']} (mujoco {result['versions']['dm_control_mujoco']}), "
        f"{result['episodes']} episodes x {result['steps']} control steps of uniform random "
        "actions (the same sequences on both sides).",
        "",
        "Returns: mean (std) over episodes. *Same start*: dm_control set to Playground's start "
        "state; *own reset*: dm_control's own initial-state distribution. Reward gap: mean "
        "|r_MJX - r_dm_control| per step from the same start; *apart at*: median first step with "
        f"a gap > {TOLERANCE}; *joints apart at*: median first step at which some joint position "
        f"differs by more than {QPOS_TOLERANCE} (m or rad).",
        "",
        "| task | MJX return | dm_control, same start | dm_control, own reset | "
        + "".join(f"reward gap, steps {w} | " for w in result["windows"])
        + "apart at | joints apart at |",
        "|---|---|---|---|" + "---|" * len(result["windows"]) + "---|---|",
    ]
    for task, r in result["tasks"].items():
        c = r["compare"]
        cells = [
            f"{c[k]['mean']:.1f} ({c[k]['std']:.1f})"
            for k in ("mjx", "dm_control_same_start", "dm_control_own_reset")
        ]
        gaps = [f"{c['mean_abs_reward_gap'][w]:.4f}" for w in result["windows"]]
        apart = statistics.median(c["steps_until_apart"])
        joints = statistics.median(c["steps_until_qpos_apart"] or [float("nan")])
        lines.append(f"| {task} | " + " | ".join(cells + gaps) + f" | {apart:.0f} | {joints:.0f} |")
    lines += [
        "",
        "Physics options (Playground / dm_control): timestep s, substeps per control step, "
        "solver iterations, line-search iterations.",
        "",
        "| task | timestep | substeps | iterations | ls_iterations |",
        "|---|---|---|---|---|",
    ]
    for task, r in result["tasks"].items():
        p, d = r["options"]["playground"], r["options"]["dm_control"]
        cells = [
            f"{p[k]} / {d[k]}" for k in ("timestep", "substeps", "iterations", "ls_iterations")
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    if args.episodes < 1 or args.steps < 1:
        ap.error("--episodes and --steps must be >= 1")
    from agents import dmc

    for t in tasks:
        dmc.playground_name(f"dmc:{t}")  # ValueError naming the valid tasks

    py = bb.ensure_venv(bb.work_dir() / "dm-control-venv", REQUIREMENTS, check=CHECK)
    ours = {}
    for t in tasks:
        print(f"[dmc_physics] {t}: MJX rollouts", flush=True)
        ours[t] = mjx_rollouts(t, args.episodes, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {f"{t}/{k}": ours[t][k] for t in tasks for k in ("qpos", "qvel", "actions")}
        np.savez(Path(tmp) / "in.npz", **arrays)
        subprocess.run([str(py), str(RUNNER), f"{tmp}/in.npz", f"{tmp}/out.json"], check=True)
        theirs = json.loads((Path(tmp) / "out.json").read_text())

    from importlib.metadata import version

    from agents.bench import machine_info

    result = {
        "command": " ".join(
            ["python benchmarks/dmc_physics.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "versions": {
            "playground": version("playground"),
            "mujoco": version("mujoco"),
            "dm_control": theirs["versions"]["dm_control"],
            "dm_control_mujoco": theirs["versions"]["mujoco"],
        },
        "episodes": args.episodes,
        "steps": args.steps,
        "tasks": {},
    }
    for t in tasks:
        c = compare(
            ours[t]["rewards"],
            theirs[t]["same_start"],
            theirs[t]["own_reset"],
            ours[t]["path"],
            theirs[t]["same_start_qpos"],
        )
        options = {"playground": ours[t]["options"], "dm_control": theirs[t]["options"]}
        result["tasks"][t] = {"compare": c, "options": options}
    result["windows"] = list(next(iter(result["tasks"].values()))["compare"]["mean_abs_reward_gap"])
    stem = (
        HERE / "results" / f"dmc_physics_cpu_{result['machine']['kind'].lower().replace('-', '')}"
    )
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
