"""Call a function in a forked child and get its result (or why there is none) back.

The child inherits the parent's imports (no start-up cost) and takes everything the call does
with it when it exits: a policy's module-level code, its monkey-patches, its leaks. The
result comes back pickled through a pipe; the parent kills a child that outlives its
wall-clock limit.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ForkOutcome:
    """What came back from the child.

    Attributes:
        value: the function's return value (None when nothing came back).
        has_value: a value came back.
        error: ``Type: message`` of an exception the function raised ("" if none).
        exception: that exception, when it could be pickled (None otherwise).
        timed_out: the parent killed the child at the limit.
        killed_by_sigkill: the child died of SIGKILL not sent by the parent (the kernel's
            out-of-memory killer, typically).
        status: the child's wait status.
    """

    value: Any = None
    has_value: bool = False
    error: str = ""
    exception: BaseException | None = None
    timed_out: bool = False
    killed_by_sigkill: bool = False
    status: int = 0


def call_forked(fn: Callable[[Any], Any], arg: Any, *, wall_s: float) -> ForkOutcome:
    """``fn(arg)`` in a forked child, killed after ``wall_s`` seconds."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child(fn, arg, write_fd)
    os.close(write_fd)
    payload, timed_out = _read(read_fd, wall_s)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return ForkOutcome(timed_out=True, status=status)
    sigkill = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if not payload:
        return ForkOutcome(killed_by_sigkill=sigkill, status=status)
    kind, value = pickle.loads(payload)
    if kind == "value":
        return ForkOutcome(value=value, has_value=True, status=status)
    error, exception = value
    return ForkOutcome(error=error, exception=exception, status=status)


def _child(fn: Callable[[Any], Any], arg: Any, write_fd: int) -> None:
    code = 0
    try:
        payload = pickle.dumps(("value", fn(arg)))
    except BaseException as exc:  # everything must reach the parent as a result
        code = 1
        text = f"{type(exc).__name__}: {exc}"
        try:
            payload = pickle.dumps(("error", (text, exc)))
        except Exception:  # an exception that does not pickle still reports its text
            payload = pickle.dumps(("error", (text, None)))
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(payload)
    os._exit(code)


def _read(fd: int, timeout_s: float) -> tuple[bytes, bool]:
    """Everything the child writes before it closes the pipe, or (partial, True) on timeout."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"".join(chunks), True
            ready, _, _ = select.select([pipe], [], [], left)
            if not ready:
                continue
            chunk = pipe.read(1 << 16)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
