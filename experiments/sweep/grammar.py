"""The sweep grammar: parsing `key=[v1,v2];(k1,k2)=[(a,b)]` into axes and their Cartesian grid of
cells, and `--set key=value`. Values stay raw here; experiments.sweep.fields checks them against the
config."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from typing import Any

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_INT = re.compile(r"^[+-]?\d+$")


class SweepError(ValueError):
    """A sweep that cannot run as written (grammar, keys, values or its workdir)."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One value as written (`raw`) and as read (`value`: int, float, bool, str or a tuple)."""

    raw: str
    value: Any


@dataclasses.dataclass(frozen=True)
class Axis:
    """One ';'-separated entry: its keys (several for a zipped group) and its rows of values."""

    keys: tuple[str, ...]
    rows: tuple[tuple[Item, ...], ...]


def split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside brackets and quotes; raises on unbalanced brackets or quotes."""
    parts, depth, quote, start = [], [], None, 0
    pairs = {"(": ")", "[": "]"}
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in pairs:
            depth.append(pairs[ch])
        elif ch in ")]":
            if not depth or depth.pop() != ch:
                raise SweepError(f"unbalanced {ch!r} at character {i + 1} of {text!r}")
        elif ch == sep and not depth:
            parts.append(text[start:i])
            start = i + 1
    if quote:
        raise SweepError(f"unclosed quote {quote} in {text!r}")
    if depth:
        raise SweepError(f"missing {depth[-1]!r} in {text!r}")
    parts.append(text[start:])
    return parts


def parse_scalar(raw: str) -> Any:
    """'3' -> 3, '1e-4' -> 1e-4, 'true' -> True, "'3'" -> '3', 'progressive' -> 'progressive'."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_item(raw: str) -> Item:
    text = raw.strip()
    if not text:
        raise SweepError("empty value (two commas in a row, or a trailing comma?)")
    if text.startswith("("):
        if not text.endswith(")"):
            raise SweepError(f"a tuple value must end with ')': {text!r}")
        inner = text[1:-1].strip()
        parts = [p for p in split_top(inner, ",")] if inner else []
        if parts and not parts[-1].strip():
            parts = parts[:-1]  # (48,) is a one-element tuple
        return Item(text, tuple(parse_item(p).value for p in parts))
    return Item(text, parse_scalar(text))


def _parse_keys(text: str, entry: str) -> tuple[str, ...]:
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        keys = tuple(k.strip() for k in text[1:-1].split(","))
    else:
        keys = (text,)
    for key in keys:
        if not _KEY.match(key):
            raise SweepError(
                f"bad key {key!r} in sweep entry {entry!r}: expected a config path such as "
                "seed or plan.name (or a zipped group such as (plan.name,plan.k))"
            )
    if len(set(keys)) != len(keys):
        raise SweepError(f"a key repeats in {entry!r}")
    return keys


def parse_sweep(text: str) -> list[Axis]:
    """The axes of a sweep string: `key=[v1,v2];key2=v;(k3,k4)=[(a,b),(c,d)]`."""
    if not text or not text.strip():
        raise SweepError("empty sweep: expected e.g. 'plan.name=[finetune,progressive];seed=[0,1]'")
    axes, seen = [], set()
    for entry in split_top(text, ";"):
        entry = entry.strip()
        if not entry:
            continue
        key_text, eq, value_text = entry.partition("=")
        if not eq or not key_text.strip():
            raise SweepError(
                f"sweep entry {entry!r} is not key=[v1,v2,...] or key=value "
                "(entries are separated by ';')"
            )
        if "[" in key_text or "]" in key_text:
            raise SweepError(f"sweep entry {entry!r}: the key comes first, as key=[v1,v2]")
        keys = _parse_keys(key_text, entry)
        again = seen.intersection(keys)
        if again:
            raise SweepError(f"key {sorted(again)[0]!r} appears twice in the sweep {text!r}")
        seen.update(keys)
        value_text = value_text.strip()
        if value_text.startswith("["):
            if not value_text.endswith("]"):
                raise SweepError(f"sweep entry {entry!r}: the value list must end with ']'")
            inner = value_text[1:-1].strip()
            if not inner:
                raise SweepError(f"sweep entry {entry!r} has an empty value list")
            try:
                items = [parse_item(p) for p in split_top(inner, ",")]
            except SweepError as e:
                raise SweepError(f"sweep entry {entry!r}: {e}") from None
        else:
            try:
                split_top(value_text, ",")  # balanced?
                items = [parse_item(value_text)]
            except SweepError as e:
                raise SweepError(f"sweep entry {entry!r}: {e}") from None
        if len(keys) == 1:
            rows = tuple((item,) for item in items)
        else:
            rows = []
            for item in items:
                if not isinstance(item.value, tuple) or len(item.value) != len(keys):
                    raise SweepError(
                        f"sweep entry {entry!r}: the zipped keys {keys} take tuples of "
                        f"{len(keys)} values, e.g. ({', '.join('v' for _ in keys)}); got {item.raw!r}"
                    )
                parts = split_top(item.raw.strip()[1:-1], ",")
                rows.append(tuple(parse_item(p) for p in parts[: len(keys)]))
            rows = tuple(rows)
        axes.append(Axis(keys, rows))
    if not axes:
        raise SweepError(f"empty sweep {text!r}")
    return axes


def grid(axes: Sequence[Axis]) -> list[dict[str, Item]]:
    """The Cartesian product of the axes (the last one varies fastest), in key order."""
    cells = []
    for combo in itertools.product(*(axis.rows for axis in axes)):
        cell = {}
        for axis, row in zip(axes, combo):
            cell.update(zip(axis.keys, row))
        cells.append(cell)
    return cells


def parse_set(assignments: Sequence[str]) -> dict[str, Item]:
    """`--set key=value` flags (one value each; the value may contain '=')."""
    fixed = {}
    for text in assignments:
        key, eq, value = text.partition("=")
        key = key.strip().removeprefix("--").removeprefix("config.")
        if not eq or not _KEY.match(key):
            raise SweepError(f"--set {text!r} is not key=value (e.g. --set=total_steps=200)")
        fixed[key] = parse_item(value) if value.strip() else Item("", "")
    return fixed
