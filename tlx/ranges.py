"""The allowed values of tlx's numeric settings, defined once.

:class:`Number` describes a range ("a finite number in (0, 10]") and checks a value against it.
`tlx.config_checks` walks a whole config with these ranges; the library functions that take the
same values as arguments (`tlx.transfer.plans`, `tlx.zoo.text`) check them with
:meth:`Number.require`. This module imports nothing from tlx but its errors, so any layer can
use it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence

from tlx.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Number:
    """The values a numeric setting allows: a finite number (or a whole one, `whole`) between
    `low` and `high` (either bound open, or absent), plus the values in `off` that switch the
    setting off (e.g. ``None`` or ``0``), described by `off_note`."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    whole: bool = False
    off: tuple = ()
    off_note: str = ""

    def describe(self) -> str:
        """'a finite number in (0, 10]', 'a positive integer', 'an integer >= 0', ..."""
        if self.whole and self.low == 1 and not self.low_open and self.high is None:
            text = "a positive integer"
        else:
            kind = "an integer" if self.whole else "a finite number"
            if self.low is not None and self.high is not None:
                left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
                text = f"{kind} in {left}{_show(self.low)}, {_show(self.high)}{right}"
            elif self.low is not None:
                text = f"{kind} {'>' if self.low_open else '>='} {_show(self.low)}"
            elif self.high is not None:
                text = f"{kind} {'<' if self.high_open else '<='} {_show(self.high)}"
            else:
                text = kind
        return f"{text} (or {self.off_note})" if self.off else text

    def problem(self, value) -> str | None:
        """None if `value` is allowed, else '' (out of range) or ', not a <type>'."""
        if value is None:
            return None if None in self.off else ", not None"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f", not a {type(value).__name__}"
        if any(o is not None and value == o for o in self.off):
            return None
        x = float(value)
        if not math.isfinite(x):
            return ""
        if self.whole and not x.is_integer():
            return ""
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return ""
        if self.high is not None and (x >= self.high if self.high_open else x > self.high):
            return ""
        return None

    def require(self, value, name: str, error: type[Exception] = ConfigError) -> None:
        """For library functions given one of these values directly: raise `error` naming it."""
        problem = self.problem(value)
        if problem is not None:
            raise error(f"{name}={value!r} must be {self.describe()}{problem}.")


def _show(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


# --- the ranges ----------------------------------------------------------------------------------

POSITIVE_INT = Number(1, whole=True)
COUNT = Number(0, whole=True)  # steps, examples, processes: 0 allowed
# jax.random.key keeps 32 bits of the seed (key(2**40) == key(0)), and numpy refuses negative
# seeds: above 2**32 - 1 two "different" seeds would silently be the same run.
SEED = Number(0, 2**32 - 1, whole=True)
# An upper bound on the base learning rate, as a sanity check rather than a tuning rule. The
# optimizer is AdamW, whose step for a parameter is about learning_rate x (a gradient normalised
# to size ~1) whatever the loss's scale: at a rate of 10 every weight moves by ~10 a step, which
# erases pretrained weights (of size ~0.1) at the first update. Rates that train anything are
# far below (these configs use 1e-4 to 1e-2); 10 leaves room for any aggressive but real choice
# while catching unit slips (1e4 for 1e-4) and the 1e9 that stopped training after a few steps.
MAX_LEARNING_RATE = 10.0
LEARNING_RATE = Number(0, MAX_LEARNING_RATE, low_open=True)
NON_NEGATIVE = Number(0)
POSITIVE = Number(0, low_open=True)  # learning-rate multipliers, Adam's eps
FRACTION = Number(0, 1)  # final_fraction: 0 decays to zero, 1 stays at the peak
# A share of the run spent rising: 1 would leave no steps to come down (one_cycle never reaches
# its peak; slanted_triangular's decay would last 0 steps).
RISE_FRACTION = Number(0, 1, high_open=True)
RATIO = Number(1)  # slanted_triangular: peak / lowest rate
# Adam's moment decay: 1 divides by 1 - b**t = 0 (bias correction) and never forgets.
MOMENT_DECAY = Number(0, 1, high_open=True)
# steps.py clips when clip_norm is truthy: 0 and None turn clipping off; a negative norm would
# flip the sign of every clipped gradient.
CLIP_NORM = Number(0, low_open=True, off=(None, 0), off_note="0 / None: no clipping")
LAYER_DECAY = Number(0, 1, low_open=True)  # lr x decay**depth from the head; 1 is off
DROPOUT = Number(0, 1, high_open=True)  # 1 drops every unit: nothing reaches the output
OPTIONAL_DROPOUT = Number(0, 1, high_open=True, off=(None,), off_note="None: the model's own")
MAX_LENGTH = Number(2, whole=True)  # [CLS] and [SEP] at least
CROP_SHARE = Number(0, 1, low_open=True)  # of an image's area


def pair_problem(value, each: Number, empty_ok: bool = False) -> str | None:
    """None if `value` is (low, high) of two numbers in `each` with low <= high (or empty and
    `empty_ok`), else what it must be."""
    if empty_ok and isinstance(value, Sequence) and not isinstance(value, str) and not value:
        return None
    must = f"(low, high) with low <= high, each {each.describe()}" + (" (or ())" * empty_ok)
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        return must
    if any(each.problem(x) is not None for x in value) or not value[0] <= value[1]:
        return must
    return None
