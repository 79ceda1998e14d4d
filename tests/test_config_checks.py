"""Every config refuses non-finite floats and out-of-range values, naming `<Class>.<field>`.

The cases are built from `dataclasses.fields`, so a new float field (or a new config class, see
`test_every_config_class_is_covered`) is tested without anyone listing it. Nothing here compiles.
"""

import ast
import dataclasses
import math
import re
from pathlib import Path

import pytest

from agents.config import TrainConfig
from agents.dreamer import DreamerConfig
from agents.tdmpc2 import TDMPC2Config
from worldmodels.checks import Range, check_config
from worldmodels.planner_configs import (
    CEMConfig,
    GradientShootingConfig,
    MPPIConfig,
    RandomShootingConfig,
)
from worldmodels.rssm_config import _PRESETS, RSSMConfig
from worldmodels.tdmpc import TDMPCConfig

ROOT = Path(__file__).resolve().parents[1]
PLANNER_CONFIGS = (RandomShootingConfig, CEMConfig, MPPIConfig, GradientShootingConfig)
CONFIGS = (TDMPCConfig, RSSMConfig, *PLANNER_CONFIGS, TDMPC2Config, DreamerConfig, TrainConfig)
REQUIRED = {"horizon": 3}  # values for the fields without a default (the planners' horizon)


def _build(cls, **kwargs):
    """`cls(**kwargs)`, with `REQUIRED` values for any field that has no default."""
    required = {
        f.name: REQUIRED[f.name]
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return cls(**(required | kwargs))


def _float_fields(cls) -> list[str]:
    """Fields of `cls` declared `float` (or holding a float by default)."""
    default = _build(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if "float" in str(f.type) or isinstance(getattr(default, f.name), float)
    ]


FLOAT_CASES = [
    (cls, name, value)
    for cls in CONFIGS
    for name in _float_fields(cls)
    for value in (math.nan, math.inf, -math.inf)
]


def test_every_config_class_is_covered():
    """Each `*Config` dataclass in the two packages is in CONFIGS (so it gets the cases below)."""
    found = set()
    for path in [*ROOT.glob("worldmodels/**/*.py"), *ROOT.glob("agents/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                if any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                    found.add(node.name)
    assert found == {cls.__name__ for cls in CONFIGS}


def test_the_float_fields_are_found():
    assert {"lr", "enc_lr_scale", "grad_clip_norm", "tau", "discount_min"} <= set(
        _float_fields(TDMPC2Config)
    )
    assert {"vmin", "rho", "reward_coef", "entropy_coef"} <= set(_float_fields(TDMPCConfig))
    assert {"min_std", "max_std", "temperature"} <= set(_float_fields(MPPIConfig))
    assert {"min_std", "max_std"} <= set(_float_fields(CEMConfig))
    assert {"learning_rate", "init_std"} <= set(_float_fields(GradientShootingConfig))
    assert {"unimix", "free_nats", "vmax"} <= set(_float_fields(RSSMConfig))
    assert {"model_lr", "lam", "retnorm_high"} <= set(_float_fields(DreamerConfig))
    assert len(FLOAT_CASES) == 3 * sum(len(_float_fields(cls)) for cls in CONFIGS)


@pytest.mark.parametrize(
    "cls,name,value", FLOAT_CASES, ids=[f"{c.__name__}.{n}={v}" for c, n, v in FLOAT_CASES]
)
def test_non_finite_floats_are_refused(cls, name, value):
    message = rf"^{cls.__name__}\.{name} must be a finite number, got {re.escape(repr(value))}$"
    with pytest.raises(ValueError, match=message):
        _build(cls, **{name: value})


RANGE_CASES = [
    # TD-MPC2 agent
    (TDMPC2Config, dict(lr=-1.0), r"TDMPC2Config\.lr must be > 0, got -1\.0"),
    (TDMPC2Config, dict(lr=0.0), r"TDMPC2Config\.lr must be > 0, got 0\.0"),
    (TDMPC2Config, dict(enc_lr_scale=-0.1), r"TDMPC2Config\.enc_lr_scale must be > 0, got -0\.1"),
    (TDMPC2Config, dict(grad_clip_norm=-1.0), r"TDMPC2Config\.grad_clip_norm must be > 0"),
    (TDMPC2Config, dict(grad_clip_norm=0.0), r"TDMPC2Config\.grad_clip_norm must be > 0"),
    (TDMPC2Config, dict(tau=0.0), r"TDMPC2Config\.tau must be in \(0, 1\], got 0\.0"),
    (TDMPC2Config, dict(tau=1.5), r"TDMPC2Config\.tau must be in \(0, 1\]"),
    (TDMPC2Config, dict(discount_denom=0.0), r"TDMPC2Config\.discount_denom must be > 0"),
    (TDMPC2Config, dict(discount_min=0.0), r"TDMPC2Config\.discount_min must be in \(0, 1\]"),
    (TDMPC2Config, dict(discount_max=1.5), r"TDMPC2Config\.discount_max must be in \(0, 1\]"),
    (
        TDMPC2Config,
        dict(alive_discount_max=1.5),
        r"TDMPC2Config\.alive_discount_max must be None or in \(0, 1\]",
    ),
    (
        TDMPC2Config,
        dict(discount_min=0.99, discount_max=0.9),
        r"TDMPC2Config\.discount_min \(0\.99\) must be <= discount_max \(0\.9\)",
    ),
    (TDMPC2Config, dict(batch_size=0), r"TDMPC2Config\.batch_size must be an int >= 1, got 0"),
    (TDMPC2Config, dict(batch_size=True), r"TDMPC2Config\.batch_size must be an int >= 1"),
    (TDMPC2Config, dict(lr=True), r"TDMPC2Config\.lr must be > 0, got True"),
    # TD-MPC2 model
    *[
        (TDMPCConfig, {name: -1.0}, rf"TDMPCConfig\.{name} must be >= 0, got -1\.0")
        for name in (
            "consistency_coef",
            "reward_coef",
            "value_coef",
            "termination_coef",
            "entropy_coef",
        )
    ],
    (TDMPCConfig, dict(rho=0.0), r"TDMPCConfig\.rho must be in \(0, 1\], got 0\.0"),
    (TDMPCConfig, dict(rho=1.5), r"TDMPCConfig\.rho must be in \(0, 1\]"),
    (TDMPCConfig, dict(discount=0.0), r"TDMPCConfig\.discount must be in \(0, 1\]"),
    (TDMPCConfig, dict(discount=1.01), r"TDMPCConfig\.discount must be in \(0, 1\]"),
    (TDMPCConfig, dict(vmin=10.0, vmax=-10.0), r"TDMPCConfig\.vmin \(10\.0\) must be < vmax"),
    (
        TDMPCConfig,
        dict(log_std_min=2.0),
        r"TDMPCConfig\.log_std_min \(2\.0\) must be < log_std_max",
    ),
    (TDMPCConfig, dict(num_q=1), r"TDMPCConfig\.num_q must be an int >= 2, got 1"),
    (TDMPCConfig, dict(latent_dim=12), r"TDMPCConfig\.latent_dim \(12\) must be a multiple"),
    # Planners (more in tests/worldmodels/test_planning.py)
    (MPPIConfig, dict(min_std=-0.1), r"MPPIConfig\.min_std must be >= 0, got -0\.1"),
    (MPPIConfig, dict(min_std=3.0), r"MPPIConfig\.min_std \(3\.0\) must be <= max_std"),
    (MPPIConfig, dict(max_std=-1.0), r"MPPIConfig\.max_std must be > 0"),
    (MPPIConfig, dict(temperature=-1.0), r"MPPIConfig\.temperature must be > 0"),
    (MPPIConfig, dict(num_pi_trajs=-1), r"MPPIConfig\.num_pi_trajs must be an int >= 0"),
    (MPPIConfig, dict(horizon=0), r"MPPIConfig\.horizon must be an int >= 1, got 0"),
    (CEMConfig, dict(num_elites=65, num_samples=64), r"CEMConfig\.num_elites \(65\) must be <="),
    (RandomShootingConfig, dict(num_samples=0), r"RandomShootingConfig\.num_samples must be"),
    (GradientShootingConfig, dict(init_std=-1.0), r"GradientShootingConfig\.init_std must be >= 0"),
    # RSSM
    (RSSMConfig, dict(unimix=-0.1), r"RSSMConfig\.unimix must be in \[0, 1\), got -0\.1"),
    (RSSMConfig, dict(unimix=1.0), r"RSSMConfig\.unimix must be in \[0, 1\)"),
    (RSSMConfig, dict(dyn_scale=-1.0), r"RSSMConfig\.dyn_scale must be >= 0"),
    (RSSMConfig, dict(vmin=1.0, vmax=1.0), r"RSSMConfig\.vmin \(1\.0\) must be < vmax \(1\.0\)"),
    (RSSMConfig, dict(classes=1), r"RSSMConfig\.classes must be an int >= 2, got 1"),
    # Dreamer
    (DreamerConfig, dict(actor_lr=-1e-4), r"DreamerConfig\.actor_lr must be > 0"),
    (DreamerConfig, dict(ac_grad_clip=-1.0), r"DreamerConfig\.ac_grad_clip must be > 0"),
    (DreamerConfig, dict(entropy=-1.0), r"DreamerConfig\.entropy must be >= 0"),
    (DreamerConfig, dict(lam=1.5), r"DreamerConfig\.lam must be in \[0, 1\]"),
    (DreamerConfig, dict(discount_horizon=0.5), r"DreamerConfig\.discount_horizon must be >= 1"),
    (DreamerConfig, dict(max_std=0.01), r"DreamerConfig\.min_std \(0\.1\) must be <= max_std"),
    (DreamerConfig, dict(retnorm_low=96.0), r"DreamerConfig\.retnorm_low \(96\.0\) must be <"),
    (DreamerConfig, dict(retnorm_high=101.0), r"DreamerConfig\.retnorm_high must be in \[0, 100\]"),
    (DreamerConfig, dict(layers=1.5), r"DreamerConfig\.layers must be an int >= 0, got 1\.5"),
    # Training run
    (TrainConfig, dict(steps=0), r"TrainConfig\.steps must be an int >= 1, got 0"),
    (TrainConfig, dict(steps=1.5), r"TrainConfig\.steps must be an int >= 1, got 1\.5"),
    (TrainConfig, dict(seed_steps=-1), r"TrainConfig\.seed_steps must be an int >= 0"),
    (TDMPC2Config, dict(updates_per_step=-1), r"TDMPC2Config\.updates_per_step must be an int >="),
    (DreamerConfig, dict(updates_per_step=-1), r"DreamerConfig\.updates_per_step must be an int"),
    (TrainConfig, dict(agent="dreamer"), r"TrainConfig\.agent must be an agent config"),
    (TrainConfig, dict(schedule="often"), r"TrainConfig\.schedule must be one of"),
    (TrainConfig, dict(fit_epochs=0), r"TrainConfig\.fit_epochs must be an int >= 1, got 0"),
    (TrainConfig, dict(fit_patience=0), r"TrainConfig\.fit_patience must be an int >= 1"),
    (TrainConfig, dict(fit_holdout=1.0), r"TrainConfig\.fit_holdout must be in \[0, 1\), got 1\.0"),
    (TrainConfig, dict(fit_holdout=-0.1), r"TrainConfig\.fit_holdout must be in \[0, 1\)"),
]


@pytest.mark.parametrize(
    "cls,kwargs,message",
    RANGE_CASES,
    ids=[f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw, _ in RANGE_CASES],
)
def test_out_of_range_values_are_refused(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _build(cls, **kwargs)


def test_defaults_and_presets_construct():
    for cfg in (TDMPC2Config(), TDMPC2Config.cpu(), TDMPC2Config.tiny()):
        assert cfg.lr > 0 and cfg.model.discount <= 1 and cfg.planner.min_std > 0
    for cfg in (DreamerConfig(), DreamerConfig.cpu(), DreamerConfig.tiny()):
        assert cfg.model_lr > 0
    for name in _PRESETS:
        assert RSSMConfig.preset(name) == getattr(RSSMConfig, name)()
    TrainConfig()
    TrainConfig(agent=DreamerConfig.cpu())
    # ints are numbers for float fields, and the range bounds are inclusive where documented
    TDMPC2Config(lr=1, grad_clip_norm=20, tau=1.0, discount_min=0.9, discount_max=0.9)
    TDMPCConfig(consistency_coef=0.0, entropy_coef=0.0, rho=1.0, discount=1.0)
    MPPIConfig(horizon=3, min_std=2.0, max_std=2.0)
    MPPIConfig(horizon=3, min_std=0.0)  # a std may collapse to zero
    for cls in PLANNER_CONFIGS:
        _build(cls)
    RSSMConfig(unimix=0.0, free_nats=0.0)
    DreamerConfig(lam=0.0, min_std=1.0, max_std=1.0, retnorm_low=0.0, retnorm_high=100.0)


def test_the_shared_rule_on_a_new_config():
    """A float field nobody listed is still checked; bools are not numbers; messages name it."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NewConfig:
        rate: float = 0.5
        sizes: tuple[float, ...] = (1.0, 2.0)
        flag: bool = True
        count: int = 3

        def __post_init__(self):
            check_config(self, {"count": Range(ge=1, integer=True)})

    NewConfig(flag=False)
    with pytest.raises(ValueError, match=r"NewConfig\.rate must be a finite number, got nan"):
        NewConfig(rate=math.nan)
    with pytest.raises(ValueError, match=r"NewConfig\.sizes must be a finite number"):
        NewConfig(sizes=(1.0, math.inf))
    with pytest.raises(ValueError, match=r"NewConfig\.count must be an int >= 1, got False"):
        NewConfig(count=False)
    assert Range(gt=0, le=1).describe() == "in (0, 1]"
    assert Range(ge=0, lt=1).describe() == "in [0, 1)"
    assert Range(ge=0, integer=True, allow_none=True).describe() == "None or an int >= 0"


def _cli_error(argv, capsys) -> str:
    from agents.cli import parse

    try:
        parse(argv)
    except ValueError as e:
        return str(e)
    except SystemExit as e:  # tyro reports a constructor's ValueError and exits with code 2
        assert e.code == 2
        out = capsys.readouterr()
        return " ".join((out.out + out.err).replace("│", " ").split())
    raise AssertionError(f"{argv} was accepted")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--lr", "nan"], "TDMPC2Config.lr must be a finite number, got nan"),
        (["tdmpc2", "--lr", "inf"], "TDMPC2Config.lr must be a finite number, got inf"),
        (["--grad-clip-norm", "-1"], "TDMPC2Config.grad_clip_norm must be > 0, got -1"),
        (["--enc-lr-scale", "-0.1"], "TDMPC2Config.enc_lr_scale must be > 0"),
        (["--model.reward-coef", "-1"], "TDMPCConfig.reward_coef must be >= 0"),
        (["dreamer", "--actor-lr", "nan"], "DreamerConfig.actor_lr must be a finite number"),
        (["--tdmpc2.lr", "1"], "agent flags have no prefix now"),
        (["--agent", "dreamer"], "the agent is a subcommand now"),
        (["--steps", "0"], "TrainConfig.steps must be an int >= 1, got 0"),
        (["--fit-holdout", "1"], "TrainConfig.fit_holdout must be in [0, 1), got 1.0"),
    ],
)
def test_cli_refuses_bad_values_naming_the_field(argv, message, capsys):
    assert message in _cli_error(["train", *argv], capsys)
