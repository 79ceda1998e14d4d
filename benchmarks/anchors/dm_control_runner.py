"""Runs inside the dm_control venv (benchmarks/dmc_physics.py makes it): replays given action
sequences on DeepMind's own dm_control suite and writes the per-step rewards.

  python dm_control_runner.py IN.npz OUT.json

IN.npz holds, per task `<domain>-<task>`: `<task>/qpos [E, nq]`, `<task>/qvel [E, nv]` (start
states) and `<task>/actions [E, T, A]`. For each episode e the runner (1) sets the start state to
(qpos[e], qvel[e]) and steps the actions ("same start"), and (2) resets dm_control itself with
`random=e` and steps the same actions ("own reset"). OUT.json has, per task, both reward arrays
[E, T], the joint positions after each step from the same start [E, T, nq], dm_control's
physics options and the package versions. No project code is imported.
"""

import json
import sys

import numpy as np


def physics_options(m, control_timestep: float) -> dict:
    """The solver settings of a MuJoCo model `m` (an `MjModel` or dm_control's wrapper of one);
    dmc_physics.py reads Playground's side with this too."""
    return {
        "timestep": float(m.opt.timestep),
        "control_timestep": float(control_timestep),
        "substeps": round(control_timestep / m.opt.timestep),
        "iterations": int(m.opt.iterations),
        "ls_iterations": int(m.opt.ls_iterations),
        "solver": int(m.opt.solver),
        "cone": int(m.opt.cone),
        "nq": int(m.nq),
        "nv": int(m.nv),
        "nu": int(m.nu),
    }


def rollout(env, actions, start=None) -> tuple[list[float], list[list[float]]]:
    """Per-step rewards [T] and joint positions after each step [T, nq]."""
    ts = env.reset()
    if start is not None:
        with env.physics.reset_context():
            env.physics.data.qpos[:] = start[0]
            env.physics.data.qvel[:] = start[1]
    rewards, qpos = [], []
    for a in actions:
        ts = env.step(a)
        rewards.append(float(ts.reward or 0.0))
        qpos.append(env.physics.data.qpos.tolist())
    return rewards, qpos


def main(path_in: str, path_out: str) -> None:
    from importlib.metadata import version

    from dm_control import suite

    data = np.load(path_in)
    tasks = sorted({k.split("/")[0] for k in data.files})
    out = {"versions": {p: version(p) for p in ("dm_control", "mujoco")}}
    for task in tasks:
        domain, name = task.split("-", 1)
        qpos, qvel, actions = (data[f"{task}/{k}"] for k in ("qpos", "qvel", "actions"))
        same, same_qpos, own = [], [], []
        for e in range(actions.shape[0]):
            env = suite.load(domain, name, task_kwargs={"random": e})
            rewards, q = rollout(env, actions[e], (qpos[e], qvel[e]))
            same.append(rewards)
            same_qpos.append(q)
            own.append(rollout(env, actions[e])[0])
        out[task] = {
            "same_start": same,
            "same_start_qpos": same_qpos,
            "own_reset": own,
            "options": physics_options(env.physics.model, env.control_timestep()),
        }
        print(f"[dm_control_runner] {task}: {actions.shape[0]} episodes", flush=True)
    with open(path_out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
