"""Starting and stopping the real processes tests talk to: MCP servers and mitmdump.

Everything binds 127.0.0.1; each process is stopped by its own PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus proxy settings (clients here talk to loopback directly)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Process:
    """A child process with its output in a log file, stopped by PID."""

    def __init__(self, args: Sequence[str], log: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(list(args), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env or clean_env(), cwd=cwd or ROOT, start_new_session=True)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def start_mcp_server(tmp: Path, *extra: str, transport: str = "streamable-http") -> tuple[Process, int, Path]:
    """The test MCP server (tests/servers/mcp_server.py); returns (process, port, side-effect log)."""
    port = free_port()
    side = tmp / f"side-effects-{port}.log"
    side.touch()
    proc = Process([sys.executable, str(ROOT / "tests/servers/mcp_server.py"), "--port", str(port),
                    "--log", str(side), "--transport", transport, *extra], tmp / f"server-{port}.log")
    wait_for_port(port, proc.proc)
    return proc, port, side


def start_mitmdump(tmp: Path, upstream_port: int | None, *options: str, policy: Path | None = None,
                   mode: str | None = None, scripts: Sequence[Path] = (),
                   program: str = "mitmdump") -> tuple[Process, int]:
    """mitmdump (or ``program``: mitmweb) with the addon script (then any extra ``scripts``);
    reverse mode to upstream_port unless mode is given."""
    port = free_port()
    args = [str(BIN / program), "--listen-host", "127.0.0.1", "-p", str(port),
            "-s", str(ROOT / "intercept_addon.py"), "--set", f"confdir={tmp / 'mitmproxy'}",
            "--set", "connection_strategy=lazy"]
    for script in scripts:
        args += ["-s", str(script)]
    args += ["--mode", mode or f"reverse:http://127.0.0.1:{upstream_port}"]
    if policy is not None:
        args += ["--set", f"intercept_policy={policy}"]
    for opt in options:
        args += ["--set", opt]
    proc = Process(args, tmp / f"{program}-{port}.log")
    wait_for_port(port, proc.proc)
    return proc, port


def ran(side_log: Path) -> list[str]:
    """Tool names that actually ran on the server, in order."""
    return [line.split(" ", 1)[0] for line in side_log.read_text().splitlines() if line]
