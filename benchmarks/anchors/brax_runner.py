"""Run Brax's own SAC or PPO (`brax.training.agents.*`) on a Brax env and record eval return
against env steps and wall time (compile included) as JSON.

Runs inside the separate venv of benchmarks/anchors/requirements.txt (jax 0.8.3), made and driven
by benchmarks/brax_baselines.py; it imports neither `worldmodels` nor `agents`. Brax is imported
only when training, so the settings logic here can be imported (and tested) without it.

  python benchmarks/anchors/brax_runner.py --algo sac --env hopper --steps 100000 --out r.json

Env steps are Brax's own count (`training_state.env_steps`, the `num_steps` handed to
`progress_fn`): with action_repeat 1, one env step per environment per `env.step`, the SAC
replay prefill included, evaluation excluded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

# What a user gets with modest settings on CPU.
DEFAULT = {
    "sac": {
        "num_envs": 64,
        "batch_size": 256,
        "grad_updates_per_step": 8,
        "learning_rate": 3e-4,
        "discounting": 0.99,
        "reward_scaling": 1.0,
        "min_replay_size": 8192,
        "max_replay_size": 1_000_000,
        "normalize_observations": True,
    },
    "ppo": {
        # batch_size * num_minibatches (512 sequences of unroll_length) is a multiple of num_envs:
        # one training step = 8 unrolls of 10 steps in each of 64 envs = 5,120 env steps, then
        # 4 passes over 8 minibatches of 64 x 10 transitions.
        "num_envs": 64,
        "batch_size": 64,
        "unroll_length": 10,
        "num_minibatches": 8,
        "num_updates_per_batch": 4,
        "discounting": 0.97,
        "learning_rate": 3e-4,
        "entropy_cost": 1e-2,
        "normalize_observations": True,
        "reward_scaling": 1.0,
    },
}

# Brax's tuned settings: google/brax notebooks/training.ipynb ("We determined some reasonable
# hyperparameters offline"), less what the runner sets itself: num_timesteps (--steps), num_evals
# (--eval-every), seed (--seed), episode_length (--episode-length) and action_repeat (always 1;
# the notebook's value is kept in NOTEBOOK_FIXED for the record).
_PPO_COMMON = {"normalize_observations": True, "learning_rate": 3e-4}
# The notebook gives both pendulums the same PPO settings.
_PPO_PENDULUMS = {
    **_PPO_COMMON,
    "num_envs": 2048,
    "batch_size": 1024,
    "unroll_length": 5,
    "num_minibatches": 32,
    "num_updates_per_batch": 4,
    "discounting": 0.97,
    "entropy_cost": 1e-2,
    "reward_scaling": 10.0,
}
TUNED = {
    ("sac", "hopper"): {
        "num_envs": 128,
        "batch_size": 512,
        "grad_updates_per_step": 64,
        "discounting": 0.997,
        "reward_scaling": 30.0,
        "learning_rate": 6e-4,
        "min_replay_size": 8192,
        "max_replay_size": 1048576,
        "normalize_observations": True,
        "max_devices_per_host": 1,
    },
    ("sac", "walker2d"): {
        "num_envs": 128,
        "batch_size": 128,
        "grad_updates_per_step": 32,
        "discounting": 0.997,
        "reward_scaling": 5.0,
        "learning_rate": 6e-4,
        "min_replay_size": 8192,
        "max_replay_size": 1048576,
        "normalize_observations": True,
        "max_devices_per_host": 1,
    },
    ("ppo", "ant"): {
        **_PPO_COMMON,
        "num_envs": 4096,
        "batch_size": 2048,
        "unroll_length": 5,
        "num_minibatches": 32,
        "num_updates_per_batch": 4,
        "discounting": 0.97,
        "entropy_cost": 1e-2,
        "reward_scaling": 10.0,
    },
    ("ppo", "halfcheetah"): {
        **_PPO_COMMON,
        "num_envs": 2048,
        "batch_size": 512,
        "unroll_length": 20,
        "num_minibatches": 32,
        "num_updates_per_batch": 8,
        "discounting": 0.95,
        "entropy_cost": 1e-3,
        "reward_scaling": 1.0,
    },
    ("ppo", "humanoid"): {
        **_PPO_COMMON,
        "num_envs": 2048,
        "batch_size": 1024,
        "unroll_length": 10,
        "num_minibatches": 32,
        "num_updates_per_batch": 8,
        "discounting": 0.97,
        "entropy_cost": 1e-3,
        "reward_scaling": 0.1,
    },
    ("ppo", "inverted_pendulum"): _PPO_PENDULUMS,
    ("ppo", "inverted_double_pendulum"): _PPO_PENDULUMS,
    ("ppo", "humanoidstandup"): {
        **_PPO_COMMON,
        "learning_rate": 6e-4,
        "num_envs": 2048,
        "batch_size": 1024,
        "unroll_length": 15,
        "num_minibatches": 32,
        "num_updates_per_batch": 8,
        "discounting": 0.97,
        "entropy_cost": 1e-2,
        "reward_scaling": 0.1,
    },
    ("ppo", "pusher"): {
        **_PPO_COMMON,
        "num_envs": 2048,
        "batch_size": 512,
        "unroll_length": 30,
        "num_minibatches": 16,
        "num_updates_per_batch": 8,
        "discounting": 0.95,
        "entropy_cost": 1e-2,
        "reward_scaling": 5.0,
    },
    ("ppo", "reacher"): {
        **_PPO_COMMON,
        "num_envs": 2048,
        "batch_size": 256,
        "unroll_length": 50,
        "num_minibatches": 32,
        "num_updates_per_batch": 8,
        "discounting": 0.95,
        "entropy_cost": 1e-3,
        "reward_scaling": 5.0,
        "max_devices_per_host": 8,
    },
}
# The notebook's values of what the runner sets itself, for the record.
NOTEBOOK_FIXED = {
    ("sac", "hopper"): {"num_timesteps": 6_553_600, "num_evals": 20, "seed": 1},
    ("sac", "walker2d"): {"num_timesteps": 7_864_320, "num_evals": 20, "seed": 1},
    ("ppo", "ant"): {"num_timesteps": 50_000_000, "num_evals": 10, "seed": 1},
    ("ppo", "halfcheetah"): {"num_timesteps": 50_000_000, "num_evals": 20, "seed": 3},
    ("ppo", "humanoid"): {"num_timesteps": 50_000_000, "num_evals": 10, "seed": 1},
    ("ppo", "inverted_pendulum"): {"num_timesteps": 2_000_000, "num_evals": 20, "seed": 1},
    ("ppo", "inverted_double_pendulum"): {"num_timesteps": 20_000_000, "num_evals": 20, "seed": 1},
    ("ppo", "humanoidstandup"): {"num_timesteps": 100_000_000, "num_evals": 20, "seed": 1},
    ("ppo", "pusher"): {"num_timesteps": 50_000_000, "num_evals": 20, "seed": 3},
    ("ppo", "reacher"): {
        "num_timesteps": 50_000_000,
        "num_evals": 20,
        "seed": 1,
        "action_repeat": 4,
    },
}
FALLBACK_LABEL = "default (no tuned settings for this pair)"
# Metrics kept in each row besides env steps, eval return and wall time (when Brax reports them).
KEEP_METRICS = (
    "eval/episode_reward_std",
    "eval/avg_episode_length",
    "eval/epoch_eval_time",
    "training/sps",
    "training/walltime",
)


def lookup_settings(algo: str, env: str, settings: str) -> tuple[str, dict]:
    """(label, hyper-parameters) of `settings` for the pair: Brax's tuned ones where the notebook
    has them, else `default` under the label FALLBACK_LABEL."""
    if algo not in DEFAULT:
        raise ValueError(f"unknown algo {algo!r}: expected one of {sorted(DEFAULT)}")
    if settings == "default":
        return "default", dict(DEFAULT[algo])
    if settings != "tuned":
        raise ValueError(f"unknown settings {settings!r}: expected 'default' or 'tuned'")
    if (algo, env) in TUNED:
        return "tuned", dict(TUNED[(algo, env)])
    return FALLBACK_LABEL, dict(DEFAULT[algo])


def cap_num_envs(hp: dict, algo: str, max_envs: int | None) -> dict | None:
    """Lower hp["num_envs"] (in place) to at most `max_envs` for a small CPU, keeping it valid for
    PPO (batch_size * num_minibatches a multiple of num_envs). Returns the note for the JSON, or
    None when nothing changed."""
    n = hp["num_envs"]
    if not max_envs or n <= max_envs:
        return None
    new = max_envs
    if algo == "ppo":
        sequences = hp["batch_size"] * hp["num_minibatches"]
        while new > 1 and sequences % new:
            new -= 1
    hp["num_envs"] = new
    return {"num_envs": {"tuned": n, "used": new, "why": f"capped at {max_envs} for a small CPU"}}


def eval_schedule(algo: str, hp: dict, steps: int, eval_every: int, action_repeat: int = 1):
    """Brax's `num_evals` that puts consecutive evaluations at most `eval_every` env steps apart
    (as near as Brax's granularity allows), and the env steps at which Brax will evaluate.

    Brax evaluates once before training (step 0), then after each of `num_evals - 1` equal epochs.
    SAC's first epoch also holds the replay prefill (`min_replay_size`, rounded up to whole steps of
    all envs), counted in env steps; its epochs are whole actor steps (num_envs env steps each).
    A PPO epoch is whole training steps of batch_size * unroll_length * num_minibatches env steps.
    Both run until at least `steps`, so the last evaluation may lie a little past it.
    """
    per_step = hp["num_envs"] * action_repeat
    if algo == "sac":
        prefill = -(-hp["min_replay_size"] // hp["num_envs"]) * per_step
        if hp["min_replay_size"] >= steps or prefill > steps:
            raise ValueError(
                f"min_replay_size {hp['min_replay_size']} leaves no training in {steps} steps"
            )
        unit, todo = per_step, steps - prefill
    elif algo == "ppo":
        if (hp["batch_size"] * hp["num_minibatches"]) % hp["num_envs"]:
            raise ValueError("PPO needs batch_size * num_minibatches to be a multiple of num_envs")
        prefill = 0
        unit = hp["batch_size"] * hp["unroll_length"] * hp["num_minibatches"] * action_repeat
        todo = steps
    else:
        raise ValueError(f"unknown algo {algo!r}")
    units_per_eval = max(1, eval_every // unit)
    evals_after_init = max(1, math.ceil(todo / (units_per_eval * unit)))
    # Brax's own epoch length for that num_evals (train.py: num_training_steps_per_epoch).
    epoch = math.ceil(todo / (evals_after_init * unit)) * unit
    points = [0] + [prefill + i * epoch for i in range(1, evals_after_init + 1)]
    return evals_after_init + 1, points


def build_kwargs(args) -> tuple[str, dict, dict]:
    """(settings label, every keyword passed to Brax's train besides environment/progress_fn,
    notes on changes from the settings' values)."""
    label, hp = lookup_settings(args.algo, args.env, args.settings)
    notes = {}
    if label == "tuned":
        capped = cap_num_envs(hp, args.algo, args.max_tuned_envs)
        if capped:
            notes.update(capped)
        fixed = NOTEBOOK_FIXED.get((args.algo, args.env), {})
        notes["notebook_values_replaced"] = {
            **fixed,
            "action_repeat": {"notebook": fixed.get("action_repeat", 1), "used": 1},
        }
    num_evals, points = eval_schedule(args.algo, hp, args.steps, args.eval_every)
    if args.algo == "sac":
        total = points[-1]  # every transition of the run fits: no change from an uncapped buffer
        if hp["max_replay_size"] > total:
            notes["max_replay_size"] = {"setting": hp["max_replay_size"], "used": total}
            hp["max_replay_size"] = total
    kwargs = {
        **hp,
        "num_timesteps": args.steps,
        "num_evals": num_evals,
        "episode_length": args.episode_length,
        "action_repeat": 1,
        "num_eval_envs": args.num_eval_envs,
        "deterministic_eval": args.deterministic_eval,
        "seed": args.seed,
    }
    notes["expected_eval_steps"] = points
    return label, kwargs, notes


def _write(path: Path, result: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", required=True, choices=sorted(DEFAULT))
    p.add_argument("--env", default="hopper", help="any Brax env name")
    p.add_argument("--steps", type=int, default=100_000, help="num_timesteps (env steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", default="default", choices=["default", "tuned"])
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument("--backend", default="positional")
    p.add_argument("--eval-every", type=int, default=10_000, help="env steps between evals")
    p.add_argument("--num-eval-envs", type=int, default=16)
    p.add_argument("--deterministic-eval", action="store_true", help="Brax's default: stochastic")
    p.add_argument(
        "--max-tuned-envs", type=int, default=256, help="cap on tuned num_envs (0: none)"
    )
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    label, kwargs, notes = build_kwargs(args)

    t_import = time.time()
    import brax
    import jax
    import jaxlib
    from brax import envs

    if args.algo == "sac":
        from brax.training.agents.sac import train as algo_train
    else:
        from brax.training.agents.ppo import train as algo_train

    env = envs.get_environment(args.env, backend=args.backend)
    setup_s = time.time() - t_import
    result = {
        "algo": args.algo,
        "env": args.env,
        "backend": args.backend,
        "settings": label,
        "requested_settings": args.settings,
        "hyperparameters": kwargs,
        "notes": notes,
        "seed": args.seed,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "versions": {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "brax": brax.__version__,
            "python": platform.python_version(),
        },
        "devices": [str(d) for d in jax.devices()],
        "setup_s": round(setup_s, 2),
        "rows": [],
        "complete": False,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"[brax_runner] {args.algo} {args.env} {label} seed {args.seed}: {kwargs}", flush=True)
    t0 = time.time()

    def progress(num_steps, metrics):
        row = {
            "env_steps": int(num_steps),
            "eval/episode_reward": float(metrics["eval/episode_reward"]),
            "wall_s": round(time.time() - t0, 2),
        }
        row.update({k: float(metrics[k]) for k in KEEP_METRICS if k in metrics})
        result["rows"].append(row)
        _write(args.out, result)  # what has been measured survives a crash
        print(
            f"[brax_runner] env steps {row['env_steps']:>9,d}  eval return "
            f"{row['eval/episode_reward']:9.2f}  wall {row['wall_s']:8.1f} s",
            flush=True,
        )

    algo_train.train(environment=env, progress_fn=progress, **kwargs)
    result["total_wall_s"] = round(time.time() - t0, 2)
    result["complete"] = True
    _write(args.out, result)
    print(f"[brax_runner] done in {result['total_wall_s']:.1f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
