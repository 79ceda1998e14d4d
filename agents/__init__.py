"""Agents that learn in Brax envs: TD-MPC2 and Dreamer, the train loop, replay, runs on disk.

The public names below are imported on first use (PEP 562), so `import agents.types` or the
`wm` command's `--help` do not pay for Brax and every agent:

  >>> import agents
  >>> agents.TrainConfig().env
  'inverted_pendulum'
"""

import importlib

_EXPORTS = {
    # the contracts
    "Agent": "agents.types",
    "DataSpec": "agents.types",
    "EnvSpec": "agents.types",
    "UpdateOutput": "agents.types",
    # configs and factories
    "TrainConfig": "agents.config",
    "AgentConfig": "agents.config",
    "make_agent": "agents.config",
    "TDMPC2Config": "agents.tdmpc2",
    "make_tdmpc2": "agents.tdmpc2",
    "DreamerConfig": "agents.dreamer",
    "make_dreamer": "agents.dreamer",
    # envs, the loop, runs
    "make_env": "agents.envs",
    "wrap_env": "agents.envs",
    "make_train": "agents.train",
    "run_training": "agents.run",
    "evaluate_run": "agents.run",
    "load_run": "agents.loading",
    "LoadedRun": "agents.loading",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
