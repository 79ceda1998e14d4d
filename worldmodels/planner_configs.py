"""The search settings of each planner in `worldmodels.planning`, one frozen config per planner.

A config holds how a planner searches (horizon, sample counts, elites, prior trajectories,
iterations, temperature, std range, optimiser); the problem it searches (action size, discount,
bounds) stays a call keyword. Each field is validated once, here, when the config is built, with
the shared rule of `worldmodels.checks`: a message names `<Class>.<field>`. A float field given
as a JAX array (traced under `jit`, say an annealed temperature) is not range-checked, since its
value may not be known yet; counts must always be Python ints, since they fix shapes.

Example:
  >>> MPPIConfig(horizon=5, num_samples=256).num_elites
  64
  >>> MPPIConfig(horizon=5, temperature=0.0)
  Traceback (most recent call last):
  ...
  ValueError: MPPIConfig.temperature must be > 0, got 0.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import optax

from worldmodels.checks import Range, check_config, check_order

_COUNT = Range(ge=1, integer=True)
_PRIOR_COUNT = Range(ge=0, integer=True)
_STD_RANGES = {"min_std": Range(ge=0), "max_std": Range(gt=0)}


def _check(cfg, ranges: Mapping[str, Range], elites: bool = False) -> None:
    """`check_config(cfg, ranges)` on the fields holding Python values, then the relations.

    Float fields holding a JAX array (maybe traced) are left out of the ranges and relations;
    counts never are. `elites` also asks `num_elites <= num_samples + num_pi_trajs`, the most a
    round can keep (the planner checks it again against the prior sequences actually in use).
    """
    known = {
        name: allowed
        for name, allowed in ranges.items()
        if allowed.integer or not isinstance(getattr(cfg, name), jax.Array)
    }
    check_config(cfg, known)
    if {"min_std", "max_std"} <= set(known):
        check_order(cfg, "min_std", "max_std", strict=False)
    if elites and cfg.num_elites > cfg.num_samples + cfg.num_pi_trajs:
        raise ValueError(
            f"{type(cfg).__name__}.num_elites ({cfg.num_elites}) must be <= num_samples + "
            f"num_pi_trajs ({cfg.num_samples} + {cfg.num_pi_trajs})"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomShootingConfig:
    """The search of `random_shooting`: uniform random sequences, prior rollouts, the warm start.

    Attributes:
      horizon: `H`, the steps planned; every config is given one (no default).
      num_samples: uniform random sequences; `1 + num_samples (+ num_pi_trajs)` candidates in all.
      num_pi_trajs: rollouts of the planner's `prior_fn` among the candidates (if one is given).

    Counts are Python ints: `horizon, num_samples >= 1`, `num_pi_trajs >= 0`.
    """

    horizon: int
    num_samples: int = 512
    num_pi_trajs: int = 24

    def __post_init__(self):
        ranges = {"horizon": _COUNT, "num_samples": _COUNT, "num_pi_trajs": _PRIOR_COUNT}
        _check(self, ranges)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CEMConfig:
    """The search of `cem`: a Gaussian over sequences, refit to its elites with equal weights.

    Attributes:
      horizon: `H`, the steps planned; every config is given one (no default).
      num_samples: sequences drawn from the Gaussian each round.
      num_elites: the best sequences (by return) the Gaussian is refit to each round.
      num_pi_trajs: rollouts of the planner's `prior_fn` added to each round's candidates.
      iterations: rounds of sampling and refitting.
      min_std: the least std after each refit.
      max_std: the std of the first round, and the most after each refit.

    Counts are Python ints: `horizon, num_samples, num_elites, iterations >= 1`,
    `num_pi_trajs >= 0`, `num_elites <= num_samples + num_pi_trajs`; `0 <= min_std <= max_std`
    with `max_std > 0`.
    """

    horizon: int
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 0
    iterations: int = 6
    min_std: float = 0.05
    max_std: float = 2.0

    def __post_init__(self):
        counts = ("horizon", "num_samples", "num_elites", "iterations")
        ranges = dict.fromkeys(counts, _COUNT) | {"num_pi_trajs": _PRIOR_COUNT} | _STD_RANGES
        _check(self, ranges, elites=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MPPIConfig:
    """The search of `mppi` (TD-MPC2's planner); the defaults are the official TD-MPC2 settings.

    Official TD-MPC2: horizon 3, 6 iterations, 512 samples, 64 elites, 24 policy trajectories,
    std in [0.05, 2], temperature 0.5. TD-MPC2 *multiplies* by its temperature; we divide, as
    MPPI does, so our default `temperature=2.0` is TD-MPC2's 0.5. Smaller is greedier.

    Attributes:
      horizon: `H`, the steps planned; every config is given one (no default).
      num_samples: sequences drawn from the Gaussian each round.
      num_elites: the best sequences (by return) the Gaussian is refit to each round.
      num_pi_trajs: rollouts of the planner's `prior_fn` added to each round's candidates.
      iterations: rounds of sampling and refitting.
      temperature: elites weigh `softmax((v - max v) / temperature)`.
      min_std: the least std after each refit.
      max_std: the std of the first round, and the most after each refit.

    Counts are Python ints: `horizon, num_samples, num_elites, iterations >= 1`,
    `num_pi_trajs >= 0`, `num_elites <= num_samples + num_pi_trajs`; `temperature > 0`;
    `0 <= min_std <= max_std` with `max_std > 0`.
    """

    horizon: int
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 24
    iterations: int = 6
    temperature: float = 2.0
    min_std: float = 0.05
    max_std: float = 2.0

    def __post_init__(self):
        counts = ("horizon", "num_samples", "num_elites", "iterations")
        ranges = dict.fromkeys(counts, _COUNT) | {"num_pi_trajs": _PRIOR_COUNT} | _STD_RANGES
        _check(self, ranges | {"temperature": Range(gt=0)}, elites=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradientShootingConfig:
    """The search of `gradient_shooting`: gradient ascent on candidates' returns.

    Attributes:
      horizon: `H`, the steps planned; every config is given one (no default).
      num_samples: candidates around the warm start: itself and `num_samples - 1` noisy copies.
      num_pi_trajs: rollouts of the planner's `prior_fn` as further candidates (if one is given).
      iterations: optimiser steps taken by every candidate.
      learning_rate: of the default optimiser, `optax.adam(learning_rate)`.
      init_std: std of the Gaussian noise on the warm start's copies.
      optimizer: any optax transformation instead of the default (then `learning_rate` is unused).

    Counts are Python ints: `horizon, num_samples, iterations >= 1`, `num_pi_trajs >= 0`;
    `learning_rate > 0`, `init_std >= 0`.
    """

    horizon: int
    num_samples: int = 8
    num_pi_trajs: int = 1
    iterations: int = 50
    learning_rate: float = 0.05
    init_std: float = 0.3
    optimizer: optax.GradientTransformation | None = None

    def __post_init__(self):
        counts = ("horizon", "num_samples", "iterations")
        floats = {"learning_rate": Range(gt=0), "init_std": Range(ge=0)}
        _check(self, dict.fromkeys(counts, _COUNT) | {"num_pi_trajs": _PRIOR_COUNT} | floats)


def resolve_config(cls: type, cfg, fields: Mapping, planner: str):
    """The config a planner call searches with: `cfg` with `fields` replaced, or `cls(**fields)`.

    Raises:
      TypeError: a name in `fields` that is no field of `cls` (naming it, `planner` and `cls`),
        or a `cfg` that is not a `cls`.
      ValueError: a field the config refuses (`<Class>.<field>`).
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [name for name in fields if name not in names]
    if unknown:
        raise TypeError(
            f"{planner}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: "
            f"neither a call keyword nor a field of {cls.__name__} ({', '.join(names)})"
        )
    if cfg is None:
        if "horizon" not in fields:
            raise TypeError(f"{planner}() needs a {cls.__name__} as cfg, or horizon=")
        return cls(**fields)
    if not isinstance(cfg, cls):
        raise TypeError(f"{planner}() takes a {cls.__name__} as cfg, got {type(cfg).__name__}")
    return dataclasses.replace(cfg, **fields) if fields else cfg
