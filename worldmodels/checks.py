"""The one validation rule of every config dataclass: finite floats, fields within their ranges.

Every config's `__post_init__` calls `check_config(self, ranges)`. It refuses any float field that
is NaN or infinite, found by walking `dataclasses.fields` (so a new float field is covered without
naming it), and then each field named in `ranges` outside its `Range`. Relations between fields
(`vmin < vmax`) go through `check_order`; anything else stays explicit in the config. Messages
name `<Class>.<field>`, what is allowed and the value.

Example:
  >>> import dataclasses
  >>> @dataclasses.dataclass(frozen=True, kw_only=True)
  ... class Config:
  ...     lr: float = 1e-3
  ...     steps: int = 10
  ...     def __post_init__(self):
  ...         check_config(self, {"lr": Range(gt=0), "steps": Range(ge=1, integer=True)})
  >>> Config(lr=float("nan"))
  Traceback (most recent call last):
  ...
  ValueError: Config.lr must be a finite number, got nan
  >>> Config(lr=-1.0)
  Traceback (most recent call last):
  ...
  ValueError: Config.lr must be > 0, got -1.0
  >>> Config(steps=0)
  Traceback (most recent call last):
  ...
  ValueError: Config.steps must be an int >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple


class Range(NamedTuple):
    """Allowed values of one field: bounds (None: unbounded) and whether it must be an int.

    `Range(gt=0)` is `> 0`, `Range(gt=0, le=1)` is `(0, 1]`, `Range(ge=1, integer=True)` an int
    `>= 1`; `allow_none` also accepts None. Bools are never numbers here.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    integer: bool = False
    allow_none: bool = False

    def contains(self, value: Any) -> bool:
        """Whether `value` is allowed (a non-bool number of the right kind within the bounds)."""
        if value is None:
            return self.allow_none
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def describe(self) -> str:
        """`"> 0"`, `"in (0, 1]"`, `"an int >= 1"`, `"None or an int >= 0"`..."""
        low = ("(", ">", self.gt) if self.gt is not None else ("[", ">=", self.ge)
        high = (")", "<", self.lt) if self.lt is not None else ("]", "<=", self.le)
        if low[2] is not None and high[2] is not None:
            text = f"in {low[0]}{low[2]}, {high[2]}{high[0]}"
        elif low[2] is not None or high[2] is not None:
            _, op, bound = low if low[2] is not None else high
            text = f"{op} {bound}"
        else:
            text = "a number"
        if self.integer:
            text = "an int" if text == "a number" else f"an int {text}"
        return f"None or {text}" if self.allow_none else text


def check_finite(cfg: Any) -> None:
    """Raise ValueError naming `<Class>.<field>` if any float field of dataclass `cfg` is NaN/inf.

    Floats are real numbers that are not ints (so bools and ints are skipped); tuple fields are
    checked element by element.
    """
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if _is_float(v) and not math.isfinite(v):
                raise ValueError(
                    f"{_owner(cfg, field.name)}.{field.name} must be a finite number, got {value!r}"
                )


def check_range(cfg: Any, name: str, allowed: Range) -> None:
    """Raise ValueError naming `<Class>.<name>`, the range and the value if it is outside."""
    value = getattr(cfg, name)
    if not allowed.contains(value):
        raise ValueError(f"{_owner(cfg, name)}.{name} must be {allowed.describe()}, got {value!r}")


def check_order(cfg: Any, low: str, high: str, *, strict: bool = True) -> None:
    """Raise ValueError unless `cfg.low < cfg.high` (`<=` if not `strict`), naming both fields."""
    a, b = getattr(cfg, low), getattr(cfg, high)
    if not (a < b if strict else a <= b):
        op = "<" if strict else "<="
        raise ValueError(f"{_owner(cfg, low)}.{low} ({a!r}) must be {op} {high} ({b!r})")


def check_config(cfg: Any, ranges: Mapping[str, Range]) -> None:
    """The shared rule: every float field of `cfg` finite, then each field of `ranges` in range.

    Args:
      cfg: a dataclass instance (called from its `__post_init__`).
      ranges: field name -> its `Range`; fields not named get the finiteness check alone.
    """
    check_finite(cfg)
    for name, allowed in ranges.items():
        check_range(cfg, name, allowed)


def _is_float(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)


def _owner(cfg: Any, name: str) -> str:
    """The class that declares field `name`: `TrainConfig`, not a CLI subclass that inherits it."""
    for cls in type(cfg).__mro__:
        if name in inspect.get_annotations(cls):
            return cls.__name__
    return type(cfg).__name__
