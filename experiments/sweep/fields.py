"""What a sweep is checked against: the config tlx.train would build, each value coerced to its
field's type, and a cell's folder named from its overrides. No process is started here."""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.sweep.grammar import Item, SweepError

NAME_LIMIT = 120  # characters of a cell's folder name before it is shortened with a hash
_SAFE = re.compile(r"[^A-Za-z0-9._=,+\-]")


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
