"""Declarative checkpoint conversion: a table of `regex -> (target path, transform)` rules.

Every source key must match exactly one rule (a rule with target=None drops its keys on purpose);
every problem is collected and reported together, so one run shows the whole mismatch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import numpy as np

from tlx.tree import flatten, unflatten


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str  # regex, fullmatch against the source key
    target: str | None  # "/"-separated flax path, may use \1 groups; None drops the key on purpose
    transform: Callable[[np.ndarray], np.ndarray] | None = None


class ConversionError(ValueError):
    """Raised with every problem found in one conversion; `problems` holds them one per line."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            f"checkpoint conversion found {len(self.problems)} problem(s):\n  "
            + "\n  ".join(self.problems)
        )


def transpose(x: np.ndarray) -> np.ndarray:
    """PyTorch Linear weight [out, in] -> flax Dense kernel [in, out]."""
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d Linear weight, got shape {x.shape}")
    return np.ascontiguousarray(x.T)


def conv_kernel(x: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d weight OIHW -> flax Conv kernel HWIO.

    Depthwise convs need nothing special: torch's [C, 1, kh, kw] becomes [kh, kw, 1, C], exactly
    flax's kernel for feature_group_count=C.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a 4-d Conv2d weight, got shape {x.shape}")
    return np.ascontiguousarray(np.transpose(x, (2, 3, 1, 0)))


def conv_bn_rules(conv: str, bn: str, target: str) -> list[Rule]:
    """A bias-free torch Conv2d (source regex `conv`) followed by BatchNorm2d (`bn`) -> tlx's
    `<target>/conv/kernel` and `<target>/bn/{scale,bias}` params, `<target>/bn/{mean,var}` stats."""
    return [
        Rule(conv + r"\.weight", f"params/{target}/conv/kernel", conv_kernel),
        Rule(bn + r"\.weight", f"params/{target}/bn/scale"),
        Rule(bn + r"\.bias", f"params/{target}/bn/bias"),
        Rule(bn + r"\.running_mean", f"batch_stats/{target}/bn/mean"),
        Rule(bn + r"\.running_var", f"batch_stats/{target}/bn/var"),
    ]


def convert(tensors: dict[str, np.ndarray], rules: Sequence[Rule]) -> dict[str, np.ndarray]:
    """Source keys -> flat {"a/b/c": array}; raises one ConversionError listing every problem."""
    converted, problems = _convert(tensors, rules)
    if problems:
        raise ConversionError(problems)
    return converted


def _convert(tensors, rules) -> tuple[dict[str, np.ndarray], list[str]]:
    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    problems: list[str] = []
    converted: dict[str, np.ndarray] = {}
    source_of: dict[str, str] = {}
    for key in sorted(tensors):
        matches = [(m, rule) for regex, rule in compiled if (m := regex.fullmatch(key))]
        if not matches:
            problems.append(f"unmatched source key {key!r} {tuple(tensors[key].shape)}")
            continue
        if len(matches) > 1:
            patterns = ", ".join(repr(rule.pattern) for _, rule in matches)
            problems.append(f"source key {key!r} matched {len(matches)} rules: {patterns}")
            continue
        match, rule = matches[0]
        if rule.target is None:
            continue
        target = match.expand(rule.target)
        if target in source_of:
            problems.append(f"target {target!r} produced by both {source_of[target]!r} and {key!r}")
            continue
        source_of[target] = key
        value = tensors[key]
        if rule.transform is not None:
            try:
                value = rule.transform(value)
            except Exception as e:  # collected, not raised: the report lists every failure
                problems.append(f"transform for {key!r} -> {target!r} failed: {e}")
                continue
        converted[target] = value
    return converted, problems


def expected_shapes(variables) -> dict[str, tuple[int, ...]]:
    """{"params/a/b": shape, "batch_stats/...": shape} of a variables tree (or its jax.eval_shape),
    the targets a converter must produce."""
    return {
        f"{collection}/{path}": tuple(leaf.shape)
        for collection, tree in variables.items()
        for path, leaf in flatten(tree).items()
    }


def convert_variables(
    tensors: dict[str, np.ndarray],
    rules: Sequence[Rule],
    expected: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, dict]:
    """Rule-table conversion into nested flax collections.

    Rule targets start with their collection ("params/..." or "batch_stats/..."). With `expected`
    (from :func:`expected_shapes` of the model's init), every expected target must be produced
    with its shape and nothing else may be; all problems, including unmatched source keys, are
    reported in one ConversionError.
    """
    flat, problems = _convert({k: np.asarray(v) for k, v in tensors.items()}, rules)
    # Views are copied: torch's .numpy() shares memory, and a later torch forward in train mode
    # would silently change converted BatchNorm statistics. Transformed arrays are already new.
    flat = {k: v if v.flags.owndata else v.copy() for k, v in flat.items()}
    if expected is not None:
        for target, shape in expected.items():
            if target not in flat:
                problems.append(f"no source key gives {target!r} {shape}")
            elif tuple(flat[target].shape) != tuple(shape):
                problems.append(
                    f"{target!r} has shape {tuple(flat[target].shape)}, the model expects {shape}"
                )
        problems += [
            f"unexpected target {t!r} (no such variable)" for t in flat if t not in expected
        ]
    if problems:
        raise ConversionError(problems)
    nested: dict[str, dict] = {}
    for path, value in flat.items():
        collection, rest = path.split("/", 1)
        nested.setdefault(collection, {})[rest] = value
    return {c: unflatten(tree) for c, tree in nested.items()}
