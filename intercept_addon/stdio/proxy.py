"""The mitmproxy in the middle: ``mitmdump`` (or ``mitmweb``) from this venv, running the addon
in reverse mode in front of the bridge, as a child process (or, shared by several wrappers, in
regular mode: ``serve_shared``).

A child rather than in-process: mitmproxy owns its event loop, options and signal handling, and
``mitmweb``/``mitmdump`` stay exactly the programs a user knows (``--set`` options pass through).
It listens on 127.0.0.1 at a port the kernel picks (read back from its log) and adds the bridge's
secret header to every request it forwards (secret_header.py, the secret in its environment, so
it never appears on a command line or on disk). Its output goes to our stderr: our stdout belongs
to the agent.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from intercept_addon.stdio import children

SCRIPT = Path(__file__).resolve().parents[1] / "script" / "intercept.py"
LISTENING = re.compile(rb"listening at (?:http://)?127\.0\.0\.1:(\d+)")
ADDON_READY = re.compile(rb"intercept: (?:policy \S+ loaded|NO POLICY)")
SECRET_HEADER = "x-intercept-stdio-secret"  # added by the proxy, required by the bridge
SECRET_ENV = "INTERCEPT_STDIO_SECRET"  # how the proxy gets it (secret_header.py)
SECRET_SCRIPT = Path(__file__).resolve().parent / "secret_header.py"


def program(web: bool) -> str:
    """mitmdump/mitmweb beside this interpreter (the same venv as the addon), else on PATH."""
    name = "mitmweb" if web else "mitmdump"
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def arguments(mode: str, *, secret: bool, policy: str | None, web: bool, options: Sequence[str],
              port: int = 0) -> list[str]:
    args = [program(web), "--listen-host", "127.0.0.1", "-p", str(port), "--mode", mode, "-s", str(SCRIPT),
            "--set", "connection_strategy=lazy"]
    if secret:
        args += ["-s", str(SECRET_SCRIPT)]
    if policy is not None:
        args += ["--set", f"intercept_policy={policy}"]
    if web:
        args += ["--set", "web_host=127.0.0.1"]
    for option in options:  # the user's own, last: they win
        args += ["--set", option]
    return args


def serve_shared(port: int, *, policy: str | None, web: bool, options: Sequence[str]) -> NoReturn:
    """``intercept-addon stdio --serve``: become the proxy that several wrappers share
    (``--proxy http://127.0.0.1:PORT``), in regular mode: each wrapper names its own bridge."""
    args = arguments("regular", secret=False, policy=policy, web=web, options=options, port=port)
    os.execv(args[0], args)


@dataclass
class Proxy:
    process: asyncio.subprocess.Process
    port: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def relay_output(self) -> None:
        """Copy the proxy's log to our stderr; note the port and when the addon is ready."""
        assert self.process.stdout is not None
        addon_ready = False
        while line := await self.process.stdout.readline():
            sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()
            if self.port is None and (match := LISTENING.search(line)):
                self.port = int(match.group(1))
            addon_ready = addon_ready or ADDON_READY.search(line) is not None
            if self.port is not None and addon_ready:
                self.ready.set()


async def start(upstream: str, secret: str, *, policy: str | None, web: bool,
                options: Sequence[str]) -> Proxy:
    env = {**os.environ, SECRET_ENV: secret,
           "PYTHONUNBUFFERED": "1"}  # its log lines must reach us as they are written
    args = arguments(f"reverse:{upstream}", secret=True, policy=policy, web=web, options=options)
    process = await children.spawn(args,
                                   stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                   stderr=asyncio.subprocess.STDOUT, env=env)
    return Proxy(process)
