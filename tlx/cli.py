"""One way to run an entry point: expected failures become a short message and an exit code.

    if __name__ == "__main__":
        cli.run(main, program="tlx.train")

replaces ``absl.app.run(main)``. What a user can get wrong ends the program with
``<program>: <message>`` on stderr and exit code :data:`tlx.errors.EXIT_CODE` (2), never with a
traceback or the whole flag help:

- flags: an unknown flag, a value of the wrong type, a missing required flag;
- ``--config.*`` overrides (ml_collections ``config_flags``): a misspelt key is named, with the
  closest existing key ("Did you mean ...") and the fields that exist there; a config file that
  does not exist or does not load;
- in ``main``: a :class:`~tlx.errors.TlxError`, ``absl.app.UsageError``, and the missing / unusable
  files (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
  PermissionError);
- Ctrl-C: ``<program>: interrupted`` and exit code 130.

``--verbosity=1`` (or higher) prints the traceback above the message. Anything else (a bug) keeps
its traceback. ``SystemExit`` raised by ``main`` passes through unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
import traceback
from collections.abc import Callable, Sequence

from absl import app, flags
from ml_collections.config_flags import config_flags as _config_flags

from tlx.errors import EXIT_CODE, TlxError

# Built-in errors that, reaching an entry point, are about the user's files, not a bug.
USER_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report it


def run(main: Callable[[list[str]], object], *, program: str) -> None:
    """``absl.app.run(main)`` with the failures above turned into ``program: message``."""
    state = {"verbose": False}

    def parse(argv: list[str]) -> list[str]:
        state["verbose"] = _argv_verbosity(argv) >= 1
        return parse_flags(argv, program, verbose=state["verbose"])

    def guarded_main(argv: list[str]):
        state["verbose"] = flags.FLAGS["verbosity"].value >= 1
        try:
            return main(argv)
        except TlxError as e:
            fail(program, str(e), error=e, verbose=state["verbose"])
        except app.UsageError as e:
            fail(program, f"{e}\n{_help_hint(program)}", error=e, verbose=state["verbose"])
        except USER_OS_ERRORS as e:
            fail(program, _os_error_message(e), error=e, verbose=state["verbose"])
        except KeyboardInterrupt as e:
            if state["verbose"]:
                traceback.print_exception(e)
            print(f"{program}: interrupted", file=sys.stderr)
            sys.exit(INTERRUPTED_EXIT_CODE)

    app.run(guarded_main, flags_parser=parse)


def fail(program: str, message: str, *, error: BaseException | None = None, verbose=False):
    """Print ``program: message`` (the traceback first when verbose) and exit with EXIT_CODE."""
    if verbose and error is not None:
        traceback.print_exception(error)
    sys.stderr.write(f"{program}: {message.rstrip()}\n")
    sys.stderr.flush()
    sys.exit(EXIT_CODE)


def parse_flags(argv: list[str], program: str, *, verbose: bool = False) -> list[str]:
    """absl's flag parsing with short errors (the ``flags_parser`` of ``app.run``)."""
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:  # unknown flag, bad value, missing required flag, flag order
        fail(program, f"{_flag_error_message(e)}\n{_help_hint(program)}", error=e, verbose=verbose)
    except Exception as e:  # config_flags raises KeyError / AttributeError for a misspelt key
        fail(program, _config_error_message(argv, e), error=e, verbose=verbose)
    # config_flags defers a config file's load failure until the config is first used.
    for name, flag in _config_file_flags():
        if isinstance(flag.value, _config_flags._ErrorConfig):
            error = object.__getattribute__(flag.value, "_error")
            fail(program, _config_file_message(name, flag, error), error=error, verbose=verbose)
    return rest


def _help_hint(program: str) -> str:
    return f"(python -m {program} --helpshort lists the flags)"


def _os_error_message(e: OSError) -> str:
    if e.filename is not None and e.strerror:
        return f"{e.strerror}: {e.filename}"
    return str(e)


def _argv_verbosity(argv: Sequence[str]) -> int:
    """--verbosity / -v from the raw command line (for errors raised while parsing it)."""
    level = 0
    for i, arg in enumerate(argv[1:], start=1):
        name, eq, value = arg.partition("=")
        if name not in ("--verbosity", "-verbosity", "--v", "-v"):
            continue
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
        with contextlib.suppress(ValueError):
            level = int(value)
    return level


def _config_file_flags():
    return [
        (name, flag)
        for name, flag in flags.FLAGS._flags().items()
        if _config_flags.is_config_flag(flag)
    ]


def _flag_error_message(e: flags.Error) -> str:
    message = str(e)
    prefix = "flag --"
    required = "must have a value other than None."
    if required in message:  # mark_flags_as_required's validator
        name = message.split("=", 1)[0].removeprefix(prefix)
        return f"--{name} is required."
    if "Error whilst parsing config file" in message:  # get_config() raised; keep its last line
        last = [line for line in message.splitlines() if line.strip()][-1]
        return f"{message.splitlines()[0]} the config file raised {last.strip()}"
    if message.startswith(prefix) and ": " in message:  # flag --name=value: reason
        head, reason = message.split(": ", 1)
        name = head.removeprefix(prefix).split("=", 1)[0]
        try:
            expected = flags.FLAGS[name].flag_type()
        except (KeyError, AttributeError):
            expected = ""
        if name.split(".", 1)[0] in dict(_config_file_flags()) and expected:
            found = head.removeprefix(prefix).split("=", 1)[-1]
            return f"--{name}: expected {_article(expected)}, found {found!r} ({reason})."
    return message


def _article(type_name: str) -> str:
    return ("an " if type_name[:1] in "aeiou" else "a ") + f"{type_name} value"


def _config_error_message(argv: Sequence[str], error: Exception) -> str:
    """Name the first ``--config.*`` override whose key the config does not have."""
    for name, flag in _config_file_flags():
        source = _flag_argument(argv, name)
        if source is None:
            continue
        path = source.split(":", 1)[0]
        try:
            config = flag.parser.parse(source)
        except Exception:  # noqa: BLE001 - reported as the config file's problem below
            config = None
        if config is None or isinstance(config, _config_flags._ErrorConfig):
            return _config_file_message(name, flag, getattr(config, "_error", error), path)
        for key in _override_keys(argv, name):
            problem = unknown_key_problem(config, key, name)
            if problem:
                return problem
    last = str(error).strip().strip("'\"").splitlines()
    return f"cannot apply the command line's config overrides: {type(error).__name__}: " + (
        last[-1] if last else ""
    )


def _config_file_message(name, flag, error, path: str | None = None) -> str:
    path = path or (getattr(flag, "config_filename", None) or "").split(":", 1)[0]
    detail = str(error).strip().splitlines()
    reason = detail[-1].strip() if detail else ""
    if not isinstance(error, OSError):  # an error in the file's own code: say which
        reason = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    return (
        f"--{name}={path}: cannot load the config file ({reason}). Expected a Python file "
        "defining get_config(), e.g. configs/minilm_rt_progressive.py."
    )


def _flag_argument(argv: Sequence[str], name: str) -> str | None:
    """The value given for --name in argv (the last one), or None."""
    value = None
    for i, arg in enumerate(argv[1:], start=1):
        for dashes in ("--", "-"):
            if arg.startswith(f"{dashes}{name}="):
                value = arg.split("=", 1)[1]
            elif arg == f"{dashes}{name}" and i + 1 < len(argv):
                value = argv[i + 1]
    return value


def _override_keys(argv: Sequence[str], name: str) -> list[str]:
    """Keys of --name.<key>[=value] (and --noname.<key>) overrides, in command-line order."""
    keys = []
    for arg in argv[1:]:
        flag = arg.lstrip("-").split("=", 1)[0]
        for prefix in (f"{name}.", f"no{name}."):
            if arg.startswith("-") and flag.startswith(prefix):
                keys.append(flag[len(prefix) :])
    return keys


def unknown_key_problem(config, key: str, flag: str = "config") -> str | None:
    """What is wrong with the override --<flag>.<key> of `config`; None when its key exists."""
    node, parts = config, key.split(".")
    for depth, part in enumerate(parts):
        if "[" in part:  # config_flags' index syntax (field[0]): not checked here
            return None
        fields = sorted(node.keys()) if hasattr(node, "keys") else None
        where = ".".join(parts[:depth]) or "the config"
        if fields is None:
            return (
                f"unknown config key --{flag}.{key}: {where} is {_article(type(node).__name__)}, "
                "not a section with fields."
            )
        if part not in fields:
            close = difflib.get_close_matches(part, fields, n=1)
            hint = (
                f" Did you mean --{flag}.{'.'.join([*parts[:depth], close[0]])}?" if close else ""
            )
            listed = ", ".join(fields) if len(fields) <= 25 else ", ".join(fields[:25]) + ", ..."
            return (
                f"unknown config key --{flag}.{key}: {where} has no field {part!r}.{hint}\n"
                f"Fields of {where}: {listed}"
            )
        node = node[part]
    return None
