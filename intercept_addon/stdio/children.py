"""The processes ``intercept-addon stdio`` starts: the wrapped server and the proxy.

Each child leads its own process group, so stopping it also stops what it started (``npx``
runs node under it), and asks the kernel for SIGTERM when the wrapper dies (PR_SET_PDEATHSIG),
so even a wrapper killed with SIGKILL leaves no child running. ``close_fds`` (subprocess's
default) leaves a child no descriptor of ours beyond the stdio we hand it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
from collections.abc import Sequence
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL


def _load_prctl() -> Any:
    """libc's prctl, looked up once in the parent (a forked child should only call it)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(name, use_errno=True).prctl
    return None


_PRCTL = _load_prctl()


def _die_with(parent: int) -> None:
    """Runs in the child between fork and exec."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the wrapper died before prctl took effect
        os._exit(1)


async def spawn(args: Sequence[str], *, stdin: int | None, stdout: int | None, stderr: int | None,
                env: dict[str, str] | None = None, cwd: str | None = None,
                limit: int = 2**16) -> asyncio.subprocess.Process:
    parent = os.getpid()
    return await asyncio.create_subprocess_exec(
        *args, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd, limit=limit,
        start_new_session=True, preexec_fn=lambda: _die_with(parent))


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    # The group is named by the leader's pid; it lives on while any member does.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def stop(proc: asyncio.subprocess.Process, grace: float = STOP_GRACE) -> None:
    """SIGTERM to the child's group, SIGKILL after ``grace`` seconds; then the group once more,
    for members that outlived their leader."""
    if proc.returncode is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            _signal_group(proc, signal.SIGKILL)
            await proc.wait()
    _signal_group(proc, signal.SIGKILL)
