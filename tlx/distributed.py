"""Multi-process (multi-host) start-up: ``jax.distributed`` from flags or the environment.

Every process of a run calls :func:`initialize` with the same coordinator address (host:port of
process 0, which serves the coordination service there) and process count, and its own process id
in [0, count), before anything touches a device. Each argument left as None is read from the
environment: ``TLX_COORDINATOR_ADDRESS`` / ``TLX_NUM_PROCESSES`` / ``TLX_PROCESS_ID`` first, then
JAX's own ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``. One process
(nothing set, or a count of 1) is a no-op. The inputs are checked before anything starts, and the
connection to the coordinator gives up after ``timeout_s`` instead of waiting for ever.

On CPU the processes' collectives (the gradient all-reduce) run over gloo (TCP).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

ENV_NAMES = {
    "coordinator_address": ("TLX_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("TLX_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("TLX_PROCESS_ID", "JAX_PROCESS_ID"),
}
DEFAULT_TIMEOUT_S = 300
_ADDRESS = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d+)$")
EXAMPLE = (
    "e.g. on every host: python -m tlx.train ... --coordinator_address=10.0.0.1:12345 "
    "--num_processes=2 --process_id=<0 on the host at 10.0.0.1, 1 on the other>"
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where this process stands in the run: resolved and checked, not yet connected."""

    coordinator_address: str | None = None
    num_processes: int = 1
    process_id: int = 0
    local_device_ids: tuple[int, ...] | None = None

    @property
    def multi_process(self) -> bool:
        return self.num_processes > 1


def _from_env(name: str, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(value, where it came from) of the first environment variable set for `name`."""
    for var in ENV_NAMES[name]:
        value = environ.get(var, "").strip()
        if value:
            return value, var
    return None, None


def _as_int(value, where: str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}={value!r} is not an integer: expected the {what}. {EXAMPLE}."
        ) from None


def check_address(address: str, where: str = "coordinator_address") -> str:
    """`host:port` (or `[ipv6]:port`) with a port in 1..65535, else a ValueError saying so."""
    match = _ADDRESS.match(address.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(
            f"{where}={address!r} is not host:port: expected the address and a free port of "
            "process 0, which serves the coordination service, such as 127.0.0.1:12345 (one "
            f"machine) or 10.0.0.1:12345. {EXAMPLE}."
        )
    return address.strip()


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The arguments, each None one read from the environment, checked; nothing is started."""
    environ = os.environ if environ is None else environ
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    values, where = {}, {}
    for name, value in given.items():
        if value is not None and value != "":
            values[name], where[name] = value, f"--{name}"
        else:
            values[name], where[name] = _from_env(name, environ)
    if values["num_processes"] is None:
        if values["coordinator_address"] is not None or values["process_id"] is not None:
            set_ = [
                where[k] for k in ("coordinator_address", "process_id") if values[k] is not None
            ]
            raise ValueError(
                f"{' and '.join(set_)} set but not the number of processes: expected "
                "--num_processes (or TLX_NUM_PROCESSES) on every process of a multi-process "
                f"run, or none of these for one process. {EXAMPLE}."
            )
        return Settings()
    count = _as_int(values["num_processes"], where["num_processes"], "number of processes")
    if count < 1:
        raise ValueError(
            f"{where['num_processes']}={count}: expected a number of processes >= 1 (the same "
            f"on every process). {EXAMPLE}."
        )
    if count == 1:
        pid = values["process_id"]
        if pid is not None and _as_int(pid, where["process_id"], "process id") != 0:
            raise ValueError(
                f"{where['process_id']}={pid} with one process: the only process id is 0. "
                "Set --num_processes to the run's process count, or drop --process_id."
            )
        return Settings()
    if values["process_id"] is None:
        raise ValueError(
            f"{where['num_processes']}={count} but no process id: expected --process_id (or "
            f"TLX_PROCESS_ID), a different one in [0, {count}) on each process. {EXAMPLE}."
        )
    pid = _as_int(values["process_id"], where["process_id"], "process id")
    if not 0 <= pid < count:
        raise ValueError(
            f"{where['process_id']}={pid} is outside [0, {count}): expected one id per process, "
            f"0 to {count - 1}, with process 0 on the coordinator's host. {EXAMPLE}."
        )
    if values["coordinator_address"] is None:
        raise ValueError(
            f"{where['num_processes']}={count} but no coordinator address: expected "
            "--coordinator_address (or TLX_COORDINATOR_ADDRESS), host:port of process 0, the "
            f"same on every process. {EXAMPLE}."
        )
    address = check_address(str(values["coordinator_address"]), where["coordinator_address"])
    if isinstance(local_device_ids, str):
        local_device_ids = [
            _as_int(x, "local_device_ids", "device ids, comma-separated")
            for x in local_device_ids.split(",")
            if x.strip()
        ]
    ids = tuple(int(i) for i in local_device_ids) if local_device_ids else None
    return Settings(address, count, pid, ids)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | str | None = None,
    *,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Join the run's processes (see the module docstring); a no-op for one process.

    Call before anything touches a device. Raises ValueError on bad input before connecting,
    and (from JAX) when the other processes do not all connect within `timeout_s`.
    """
    settings = resolve(
        coordinator_address, num_processes, process_id, local_device_ids, environ=environ
    )
    if not settings.multi_process:
        return settings
    if timeout_s < 1:
        raise ValueError(f"timeout_s={timeout_s}: expected a positive number of seconds.")
    import jax

    if jax.distributed.is_initialized():
        return settings
    # Cross-process collectives on CPU (JAX's default today; set so a change cannot surprise).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=settings.coordinator_address,
        num_processes=settings.num_processes,
        process_id=settings.process_id,
        local_device_ids=list(settings.local_device_ids) if settings.local_device_ids else None,
        cluster_detection_method="deactivate",  # every argument is given: no cluster probing
        initialization_timeout=int(timeout_s),
        # a peer that dies is noticed, and process 0 stops waiting for it at exit, in bounded time
        heartbeat_timeout_seconds=min(100, int(timeout_s)),
        shutdown_timeout_seconds=int(timeout_s),
    )
    return settings
