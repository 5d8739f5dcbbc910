"""The agent's lines on our stdin, read by a daemon thread (works for pipes, files and ttys, and a
blocked read never holds up the exit: raw ``os.read``, no buffered reader and its lock)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading


def read_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
    """Feed stdin's lines to ``queue`` from a daemon thread (works for pipes, files and ttys, and
    a blocked read never holds up the exit: raw ``os.read``, no buffered reader's lock); b"" means
    end of input."""
    def put(line: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are exiting
            loop.call_soon_threadsafe(queue.put_nowait, line)

    def run() -> None:
        held = b""
        while chunk := _read(0):
            *lines, held = (held + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    put(line)
        if held.strip():
            put(held)
        put(b"")
    threading.Thread(target=run, name="stdin", daemon=True).start()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 16)
    except OSError:  # EIO from a closed terminal: the agent is gone too
        return b""
