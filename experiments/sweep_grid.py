"""The sweep grammar and what it is checked against: parsing `key=[v1,v2];(k1,k2)=[(a,b)]` into a
grid of cells, coercing each value to its config field's type, and naming a cell's folder from its
overrides. Used by experiments/sweep.py; no process is started here."""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import hashlib
import importlib.util
import itertools
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

NAME_LIMIT = 120  # characters of a cell's folder name before it is shortened with a hash
_SAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_INT = re.compile(r"^[+-]?\d+$")


class SweepError(ValueError):
    """A sweep that cannot run as written (grammar, keys, values or its workdir)."""


# ---------------------------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Config: keys and types
# ---------------------------------------------------------------------------------------------


def load_config(path: str):
    """The config tlx.train would build from --config=PATH (PATH may end in ':arg')."""
    file_path, *arg = path.split(":", 1)  # as ml_collections' config_flags reads it
    if not Path(file_path).is_file():
        raise SweepError(f"--config={path}: no such file {file_path!r}")
    if str(Path.cwd()) not in sys.path:  # configs import each other as `configs.*`
        sys.path.insert(0, str(Path.cwd()))
    spec = importlib.util.spec_from_file_location("sweep_config", file_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise SweepError(f"--config={path}: {file_path} has no get_config()")
    return module.get_config(*arg)


def _field_type(node, name: str):
    try:
        return node.get_type(name)
    except (AttributeError, KeyError):
        value = node[name]
        return type(value) if value is not None else None


def _node_keys(node) -> list[str]:
    return sorted(node.keys()) if hasattr(node, "keys") else []


def coerce(config, key: str, item: Item) -> Any:
    """`item` as the type of config field `key`; raises SweepError naming what was expected."""
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        if not hasattr(node, "keys") or part not in node:
            where = ".".join(parts[:depth]) or "the config"
            found = _node_keys(node)
            close = difflib.get_close_matches(part, found, n=1)
            hint = f" Did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else ""
            if not found:
                raise SweepError(
                    f"unknown config key {key!r}: {where} is a {type(node).__name__}, "
                    f"not a section with fields.{hint}"
                )
            raise SweepError(
                f"unknown config key {key!r}: expected one of {where}'s fields "
                f"{found}, found {part!r}.{hint}"
            )
        if depth < len(parts) - 1:
            node = node[part]
    name = parts[-1]
    field_type = _field_type(node, name)
    current = node[name]
    value = item.value
    if hasattr(current, "keys"):
        raise SweepError(
            f"config key {key!r} is a section ({_node_keys(current)}); sweep one of its fields"
        )

    def bad(expected: str):
        return SweepError(
            f"config key {key!r} expects {expected} (it is {current!r}), found {item.raw!r}"
        )

    if field_type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad("a bool (true or false)")
    if field_type is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad("an int")
    if field_type is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise bad("a float")
    if field_type is str:
        return value if isinstance(value, str) else item.raw.strip()
    if field_type in (tuple, list):
        if isinstance(value, tuple):
            return value if field_type is tuple else list(value)
        if isinstance(value, str):
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise bad("a tuple, e.g. (48,64)") from None
            if isinstance(parsed, tuple | list):
                return field_type(parsed)
        raise bad("a tuple, e.g. (48,64)")
    return value  # None-valued or other fields: as read


def apply(config, overrides: Mapping[str, Any]):
    """A copy of `config` with `overrides` ({dotted key: coerced value}) set."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        *path, name = key.split(".")
        node = config
        for part in path:
            node = node[part]
        try:
            node[name] = value
        except (TypeError, ValueError) as e:
            raise SweepError(f"config key {key!r} refuses {value!r}: {e}") from None
    return config


def flag_value(value: Any) -> str:
    """A value as tlx.train's --config.key=... reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return repr(tuple(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _name_part(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "+".join(_name_part(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def cell_name(overrides: Mapping[str, Any]) -> str:
    """A stable, filesystem-safe folder name: `plan.name=progressive,seed=1`.

    Characters outside [A-Za-z0-9._=,+-] become '_', and a name so changed (or longer than
    NAME_LIMIT) gets a short hash of the exact overrides, so distinct cells never share a folder.
    """
    if not overrides:
        return "default"
    exact = ",".join(f"{k}={_name_part(v)}" for k, v in overrides.items())
    safe = _SAFE.sub("_", exact)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if safe != exact or len(safe) > NAME_LIMIT:
        digest = hashlib.sha1(exact.encode()).hexdigest()[:8]
        safe = f"{safe[:NAME_LIMIT]}-{digest}"
    return safe
