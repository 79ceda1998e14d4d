"""A training run's configuration, and the agents it can train.

`TrainConfig.agent` is an agent's own config; its type picks the agent. The agents this package
ships are the members of `AgentConfig`, and `make_agent` builds one: adding an agent is one new
module (a frozen config with a `name` label, a `make_<agent>(cfg, spec) -> Agent` factory), one
member of `AgentConfig` and one `case` in `make_agent`. The train loop (`agents.train`) imports
none of them: it reads the `Agent` contract (`agents.types`).

Example:
  >>> from agents.dreamer import DreamerConfig
  >>> cfg = TrainConfig(env="inverted_pendulum", agent=DreamerConfig.cpu(), steps=20_000)
  >>> cfg.agent.name
  'dreamer'
"""

from __future__ import annotations

import dataclasses
import math
import typing

from agents.dreamer import DreamerConfig, make_dreamer
from agents.envs import check_env_name
from agents.tdmpc2 import TDMPC2Config, make_tdmpc2
from agents.types import Agent, EnvSpec
from worldmodels.checks import Range, check_config

# Every agent `wm train` knows; each member has a `name: ClassVar[str]` label (the CLI
# subcommand, the `config.json` tag) and a `cpu()` preset (the CLI default).
AgentConfig = TDMPC2Config | DreamerConfig
AGENT_CONFIGS: tuple[type, ...] = typing.get_args(AgentConfig)


def make_agent(cfg: AgentConfig, spec: EnvSpec) -> Agent:
    """The agent for an agent config, acting in envs of `spec`.

    Raises:
      TypeError: `cfg` is not one of the `AgentConfig` types.
      ValueError: the agent cannot act in this env (e.g. pixels for a state-only agent).
    """
    match cfg:
        case TDMPC2Config():
            return make_tdmpc2(cfg, spec)
        case DreamerConfig():
            return make_dreamer(cfg, spec)
    names = ", ".join(c.__name__ for c in AGENT_CONFIGS)
    raise TypeError(f"TrainConfig.agent must be one of {names}, got {type(cfg).__name__}")


def agent_config_class(name: str) -> type:
    """The `AgentConfig` member labelled `name` (its `name` class attribute).

    Raises:
      ValueError: no agent has that label; the message lists the labels.
    """
    for cls in AGENT_CONFIGS:
        if cls.name == name:
            return cls
    labels = ", ".join(repr(c.name) for c in AGENT_CONFIGS)
    raise ValueError(f"unknown agent {name!r}: the agents are {labels}")


# How a train chunk composes acting and learning (`TrainConfig.schedule`).
Schedule = typing.Literal["interleaved", "episodic"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A training run. Env steps count physics steps (agent steps x num_envs x action_repeat).

    Attributes:
      env: Brax env name, or `dmc:<domain>-<task>` for a DM Control task (`agents.dmc`).
      agent: the agent's config; its type picks the agent (`AgentConfig`).
      steps: total env steps.
      num_envs: environments stepped together (vmapped).
      action_repeat: physics steps per agent step.
      episode_length: episode limit in physics steps.
      backend: Brax physics backend (None: positional where the env has it).
      obs: `"state"` (Brax's observation vector) or `"pixels"` (`image_size`^2 RGB frames drawn
        on device, `agents.render`; for agents with an image encoder).
      image_size: frame height and width with `obs="pixels"`.
      seed: random seed.
      num_seeds: seeds trained together in one vmapped program: `seed .. seed + num_seeds - 1`
        (each seed as a one-seed run with that seed would train it, up to float rounding).
      seed_steps: env steps of uniformly random actions before learning starts.
      chunk_steps: agent steps per jitted chunk (Python runs between chunks).
      schedule: how a train chunk interleaves acting and learning (`agents.train`):
        `"interleaved"`: after each vectorised env step, `updates_per_step` agent updates on
        sequences sampled with replacement (TD-MPC2's and Dreamer's loop);
        `"episodic"`: `chunk_steps` agent steps of acting first, then a fit of up to `fit_epochs`
        epochs over the whole replay, every valid sequence start once per epoch in a random order
        (PETS' and the classic MBRL loop; the agent's `updates_per_step` is not used). To fit
        after each episode, as PETS does, set `chunk_steps` to the episode length in agent steps
        (`episode_length // action_repeat`).
      fit_epochs: `"episodic"`: most epochs per fit.
      fit_holdout: `"episodic"`: fraction of the valid starts held out of each fit (drawn afresh
        every fit) to measure `fit_metric` on for early stopping; 0: no holdout, always
        `fit_epochs` epochs.
      fit_patience: `"episodic"` with a holdout: stop a fit once the held-out `fit_metric` has not
        improved on its best (the first being the loss before the fit) for this many epochs.
      fit_metric: `"episodic"` with a holdout: the metric of the agent's update that is the
        held-out loss (the update's metrics are those of the state it starts from).
      replay_capacity: transitions kept (all envs together).
      eval_every: env steps between evaluations.
      eval_episodes: evaluation episodes, run in parallel.
      checkpoint_every: env steps between checkpoints.
    """

    env: str = "inverted_pendulum"
    agent: AgentConfig = dataclasses.field(default_factory=TDMPC2Config.cpu)
    steps: int = 30_000
    num_envs: int = 4
    action_repeat: int = 2
    episode_length: int = 1000
    backend: str | None = None
    obs: typing.Literal["state", "pixels"] = "state"
    image_size: int = 64
    seed: int = 0
    num_seeds: int = 1
    seed_steps: int = 4_000
    chunk_steps: int = 250
    schedule: Schedule = "interleaved"
    fit_epochs: int = 5
    fit_holdout: float = 0.0
    fit_patience: int = 1
    fit_metric: str = "loss/model"
    replay_capacity: int = 100_000
    eval_every: int = 5_000
    eval_episodes: int = 4
    checkpoint_every: int = 5_000

    def __post_init__(self):
        try:
            check_env_name(self.env)
        except ValueError as e:
            raise ValueError(f"TrainConfig.env: {e}") from None
        if not isinstance(self.agent, AGENT_CONFIGS):
            names = ", ".join(c.__name__ for c in AGENT_CONFIGS)
            raise ValueError(
                f"TrainConfig.agent must be an agent config ({names}), got {self.agent!r}"
            )
        positive = (
            "steps",
            "num_envs",
            "action_repeat",
            "episode_length",
            "chunk_steps",
            "replay_capacity",
            "eval_every",
            "eval_episodes",
            "checkpoint_every",
            "image_size",
            "num_seeds",
            "fit_epochs",
            "fit_patience",
        )
        check_config(
            self,
            {name: Range(ge=1, integer=True) for name in positive}
            | {"seed_steps": Range(ge=0, integer=True), "fit_holdout": Range(ge=0, lt=1)},
        )
        if self.obs not in ("state", "pixels"):
            raise ValueError(f"TrainConfig.obs must be 'state' or 'pixels', got {self.obs!r}")
        if self.schedule not in typing.get_args(Schedule):
            raise ValueError(
                f"TrainConfig.schedule must be one of {typing.get_args(Schedule)}, "
                f"got {self.schedule!r}"
            )

    @property
    def env_steps_per_agent_step(self) -> int:
        return self.num_envs * self.action_repeat

    @property
    def seed_agent_steps(self) -> int:
        return math.ceil(self.seed_steps / self.env_steps_per_agent_step)

    @property
    def env_steps_per_chunk(self) -> int:
        return self.chunk_steps * self.env_steps_per_agent_step

    @property
    def seed_env_steps(self) -> int:
        """Env steps of the seed phase (`seed_steps` rounded up to whole agent steps)."""
        return self.seed_agent_steps * self.env_steps_per_agent_step

    @property
    def num_chunks(self) -> int:
        """Train chunks of a whole run: after the seed phase, until `steps` env steps are done."""
        return max(0, math.ceil((self.steps - self.seed_env_steps) / self.env_steps_per_chunk))

    @property
    def final_env_steps(self) -> int:
        """The env steps a whole run ends at: `steps`, rounded up to the end of a chunk."""
        return self.seed_env_steps + self.num_chunks * self.env_steps_per_chunk
