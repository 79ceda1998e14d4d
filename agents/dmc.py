"""DeepMind Control Suite tasks (MuJoCo Playground's MJX port) behind the Brax `Env` interface.

`make_env("dmc:cheetah-run", ...)` (in `agents.envs`) lands here: `load(task)` builds the
Playground env and `PlaygroundEnv` adapts it to Brax's `reset(key) -> State` /
`step(state, action) -> State`, so the same wrappers as for the Brax tasks apply (action repeat,
episodes, NaN guard, auto-reset; `agents.envs.wrap_env`).

Names are dm_control's `domain-task` (`cheetah-run`, `walker-walk`, `hopper-hop`, ...), as in
the TD-MPC2 and DreamerV3 papers; Playground's own CamelCase names (`CheetahRun`) are accepted
too. `DMC_TASKS` lists them all.

What differs from dm_control itself (see `benchmarks/results/playground_compat.md`):
  * Physics is MJX (`impl="jax"` here: Playground's default `warp` compiles for minutes on CPU).
  * Playground's envs have no time limit and set `done` only on NaN physics; the episode limit
    (1000 control steps in the papers) is `make_env`'s `episode_length`, and no episode ends by
    failure, so every `done` is a truncation.
  * One env step is one control step (`ctrl_dt`, e.g. 0.01 s for cheetah, 0.025 s for walker):
    `action_repeat` counts control steps, as in the papers' env-step counts.

Needs the `dmc` extra (`pip install 'worldmodels[dmc]'`, i.e. `playground`); importing this
module does not import Playground, `load` does.
"""

from __future__ import annotations

import contextlib
import io

import jax
from brax.envs.base import Env, State

# dm_control `domain-task` name -> Playground name. Playground has no ball_in_cup/point_mass task
# suffix; every other name is the CamelCase of the dm_control one.
DMC_TASKS = {
    "acrobot-swingup": "AcrobotSwingup",
    "acrobot-swingup_sparse": "AcrobotSwingupSparse",
    "ball_in_cup-catch": "BallInCup",
    "cartpole-balance": "CartpoleBalance",
    "cartpole-balance_sparse": "CartpoleBalanceSparse",
    "cartpole-swingup": "CartpoleSwingup",
    "cartpole-swingup_sparse": "CartpoleSwingupSparse",
    "cheetah-run": "CheetahRun",
    "finger-spin": "FingerSpin",
    "finger-turn_easy": "FingerTurnEasy",
    "finger-turn_hard": "FingerTurnHard",
    "fish-swim": "FishSwim",
    "hopper-hop": "HopperHop",
    "hopper-stand": "HopperStand",
    "humanoid-stand": "HumanoidStand",
    "humanoid-walk": "HumanoidWalk",
    "humanoid-run": "HumanoidRun",
    "pendulum-swingup": "PendulumSwingup",
    "point_mass-easy": "PointMass",
    "reacher-easy": "ReacherEasy",
    "reacher-hard": "ReacherHard",
    "swimmer-swimmer6": "SwimmerSwimmer6",
    "walker-run": "WalkerRun",
    "walker-stand": "WalkerStand",
    "walker-walk": "WalkerWalk",
}
PREFIX = "dmc:"


def is_dmc(name: str) -> bool:
    """True for names that select a DM Control task (`dmc:...`)."""
    return name.startswith(PREFIX)


def playground_name(name: str) -> str:
    """`dmc:cheetah-run` (or `dmc:CheetahRun`) -> `CheetahRun`; ValueError for unknown tasks."""
    task = name.removeprefix(PREFIX)
    if task in DMC_TASKS:
        return DMC_TASKS[task]
    if task in DMC_TASKS.values():
        return task
    raise ValueError(
        f"unknown DM Control task {name!r}; valid: " + ", ".join(PREFIX + t for t in DMC_TASKS)
    )


def load(name: str) -> PlaygroundEnv:
    """Builds the single (unbatched) Playground env for `name`, MJX physics, Brax interface."""
    task = playground_name(name)
    try:
        # mujoco prints "Failed to import warp" to stdout when warp is absent.
        with contextlib.redirect_stdout(io.StringIO()):
            from mujoco_playground import dm_control_suite
    except ImportError as e:
        raise ImportError(
            f"env {name!r} needs MuJoCo Playground: pip install 'worldmodels[dmc]' ({e})"
        ) from None
    return PlaygroundEnv(dm_control_suite.load(task, config_overrides={"impl": "jax"}))


class PlaygroundEnv(Env):
    """A Playground `MjxEnv` with Brax's `Env` interface: `State.pipeline_state` holds the MJX
    `Data` that Playground keeps in `State.data`; obs, reward, done, metrics and info pass as
    they are (Playground's step keeps info keys it does not know, so the wrappers' fields
    survive)."""

    def __init__(self, env):
        self._env = env

    def reset(self, rng: jax.Array) -> State:
        return _to_brax(self._env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        from mujoco_playground import State as PlaygroundState

        fields = {f: getattr(state, f) for f in _SHARED_FIELDS}
        given = PlaygroundState(data=state.pipeline_state, **fields)
        return _to_brax(self._env.step(given, action))

    @property
    def observation_size(self) -> int:
        return self._env.observation_size

    @property
    def action_size(self) -> int:
        return self._env.action_size

    @property
    def backend(self) -> str:
        return "mjx"


# Fields Brax's and Playground's `State` share; Brax's `pipeline_state` is Playground's `data`.
_SHARED_FIELDS = ("obs", "reward", "done", "metrics", "info")


def _to_brax(s) -> State:
    # Python-scalar leaves of `data` (MJX's `time` after a reset) are made arrays by the
    # wrappers (`agents.wrappers._strong`), as for Brax's own envs.
    return State(pipeline_state=s.data, **{f: getattr(s, f) for f in _SHARED_FIELDS})
