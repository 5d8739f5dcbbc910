"""The intercept-addon demo: a policy-enforcing proxy in front of the real mcp-sora.

``python -m intercept_addon.demo.run`` (no arguments):

1. ``scripts/setup-sora-venv`` creates ``.venv-sora`` (mcp-sora needs ``mcp<2``).
2. Three processes start on free 127.0.0.1 ports: the fake AceData API
   (``fake_acedata.py``), the real mcp-sora (``sora_server.py``, pointed at the
   fake), and ``mitmdump -s intercept_addon.py`` in reverse mode in front of
   mcp-sora with ``policies/mcp-sora.yaml`` and in-memory counters.
3. A scripted agent, using the official MCP Python SDK through the proxy:

   * session ``agent-1`` lists the tools (the two async tools are hidden),
     calls ``sora_generate_video_from_image`` 35 times with valid arguments
     (the policy allows 30 per 60 s per agent, so calls 31-35 are denied
     with a retry_after), then 3 times with invalid arguments (rejected by the
     policy's argument validation);
   * session ``agent-2`` makes 3 image-to-video calls: its own budget.

4. It prints every call, the totals, and the fake API's own count of
   ``POST /sora/videos`` requests: 33 (30 + 3), so no denied call reached it.

Exit status 0 only if everything was observed as expected, 1 otherwise, 75 if
``.venv-sora`` cannot be installed because the package index is unreachable.
Every process it started is stopped (by PID) on the way out, also on
SIGINT/SIGTERM.

Real use: ``--upstream URL`` puts the proxy in front of any MCP server (no fake,
no mcp-sora; the scripted agent runs only with ``--agent``), ``--policy FILE``,
``--port N``, ``--web`` (mitmweb and its UI), ``--keep-running``.

Agents are told apart by the ``X-Agent-Id`` header: mcp-sora is stateless (no
``Mcp-Session-Id``), so without it every client on one address would share a
budget.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADDON_SCRIPT = ROOT / "intercept_addon.py"
DEFAULT_POLICY = ROOT / "policies" / "mcp-sora.yaml"
SETUP_SCRIPT = ROOT / "scripts" / "setup-sora-venv"
SORA_LAUNCHER = ROOT / "intercept_addon" / "demo" / "sora_server.py"
SETUP_UNREACHABLE = 75  # setup-sora-venv: the package index is unreachable

IMAGE_TOOL = "sora_generate_video_from_image"
ALL_TOOLS = frozenset({
    "sora_generate_video",
    "sora_generate_video_from_image",
    "sora_generate_video_with_character",
    "sora_generate_video_async",
    "sora_generate_video_v2",
    "sora_generate_video_v2_async",
    "sora_get_task",
    "sora_get_tasks_batch",
    "sora_list_models",
    "sora_list_actions",
})
HIDDEN_TOOLS = frozenset({"sora_generate_video_async", "sora_generate_video_v2_async"})
VISIBLE_TOOLS = ALL_TOOLS - HIDDEN_TOOLS
DENIED_PREFIX = "[INTERCEPT POLICY DENIED]"
VIDEOS_PATH = "/sora/videos"

# The scenario and what policies/mcp-sora.yaml makes of it.
RATE_LIMIT = 30  # image-to-video calls per agent ...
RATE_WINDOW = 60  # ... per this many seconds (sliding)
AGENT1_CALLS = 35
AGENT2_CALLS = 3
AGENT_HEADER = "X-Agent-Id"

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
START_TIMEOUT = 60.0  # seconds for any one process to get ready
CALL_TIMEOUT = 30.0  # seconds for any one MCP request
SCENARIO_TIMEOUT = 120.0  # seconds for the whole scripted agent


class DemoError(Exception):
    """Something in the demo went wrong; the message says what."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus proxy settings and anything that would redirect mcp-sora."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in PROXY_VARS
        and not k.startswith("ACEDATACLOUD_")
        and k not in ("MCP_SERVER_URL", "PYTHONPATH")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A child process with stdout+stderr in a log file; stopped by its own PID only."""

    def __init__(self, name: str, args: Sequence[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.args = list(args)
        self.log_path = log
        self._log = open(log, "wb")
        try:
            self.proc = subprocess.Popen(
                self.args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env or child_env(), cwd=ROOT,
                start_new_session=True,  # a terminal's Ctrl-C reaches only us; we stop the children
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Wait until the log shows ``pattern``; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                raise DemoError(f"{self.name} exited with status {self.proc.returncode} before it was ready:\n"
                                f"{self.tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{self.name} was not ready after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.05)

    def wait_for_port(self, port: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DemoError(f"{self.name} exited with status {self.proc.returncode} before listening "
                                f"on {port}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"{self.name}: nothing listening on 127.0.0.1:{port} after {timeout:.0f} s:\n"
                                f"{self.tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, to this PID only."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@dataclass
class Stack:
    """The running pieces. ``close()`` stops every process it holds."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    fake_url: str | None = None  # fake AceData API base URL
    sora_url: str | None = None  # mcp-sora base URL
    upstream: str | None = None  # what the proxy forwards to (scheme://host:port)
    mcp_path: str = "/mcp"
    proxy_port: int | None = None
    web_url: str | None = None

    @property
    def proxy_url(self) -> str:
        """The MCP endpoint through the proxy: what a client connects to."""
        return f"http://127.0.0.1:{self.proxy_port}{self.mcp_path}"

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for p in self.procs:
            if p.proc.poll() is not None:
                raise DemoError(f"{p.name} (pid {p.pid}) exited with status {p.proc.returncode}:\n{p.tail()}")

    def close(self) -> None:
        for p in reversed(self.procs):  # proxy first, then mcp-sora, then the fake
            try:
                p.stop()
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop {p.name} (pid {p.pid}): {exc}", file=sys.stderr)
        self.procs.clear()


def setup_sora_venv() -> Path:
    """Create or reuse .venv-sora; return its python."""
    sora_python = Path(os.environ.get("VENV_SORA") or ROOT / ".venv-sora") / "bin" / "python"
    try:
        result = subprocess.run([str(SETUP_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise DemoError("scripts/setup-sora-venv took more than 15 minutes") from None
    if result.returncode == SETUP_UNREACHABLE:
        raise DemoError(f"cannot install mcp-sora: the package index is unreachable\n{result.stderr[-2000:]}",
                        SETUP_UNREACHABLE)
    if result.returncode != 0 or not sora_python.exists():
        raise DemoError(f"scripts/setup-sora-venv failed (status {result.returncode}):\n{result.stderr[-3000:]}")
    return sora_python


def start_fake(stack: Stack) -> Proc:
    """Start the fake AceData API (not waiting for it; see ``wait_fake``)."""
    return stack.add(Proc("fake-acedata", [sys.executable, "-m", "intercept_addon.demo.fake_acedata", "--port", "0"],
                          stack.workdir / "fake-acedata.log"))


def wait_fake(stack: Stack, proc: Proc) -> str:
    match = proc.wait_for(re.compile(r"^fake-acedata listening on (http://127\.0\.0\.1:\d+)$", re.M))
    stack.fake_url = match.group(1)
    return stack.fake_url


def start_sora(stack: Stack, sora_python: Path, fake_url: str, port: int = 0) -> Proc:
    """Start the real mcp-sora, its upstream API being the fake (not waiting; see ``wait_sora``)."""
    return stack.add(Proc(
        "mcp-sora", [str(sora_python), str(SORA_LAUNCHER), "--port", str(port), "--api-base-url", fake_url],
        stack.workdir / "mcp-sora.log",
        env=child_env(ACEDATACLOUD_API_BASE_URL=fake_url, ACEDATACLOUD_API_TOKEN="demo-token"),
    ))


def wait_sora(stack: Stack, proc: Proc) -> str:
    match = proc.wait_for(re.compile(r"^sora-mcp listening on (http://127\.0\.0\.1:\d+) ", re.M))
    stack.sora_url = match.group(1)
    return stack.sora_url


def start_proxy(stack: Stack, upstream: str, *, policy: Path = DEFAULT_POLICY, port: int | None = None,
                web: bool = False, extra_options: Sequence[str] = ()) -> Proc:
    """Start mitmdump (or mitmweb) with the addon in reverse mode in front of ``upstream``.

    Returns without waiting; ``wait_proxy`` waits for the listener (and mitmweb's UI URL).
    """
    stack.upstream = upstream
    stack.proxy_port = port or free_port()
    tool = "mitmweb" if web else "mitmdump"
    args = [
        str(BIN / tool),
        "--listen-host", "127.0.0.1", "-p", str(stack.proxy_port),
        "--mode", f"reverse:{upstream}",
        "-s", str(ADDON_SCRIPT),
        "--set", f"confdir={stack.workdir / 'mitmproxy'}",
        "--set", "connection_strategy=lazy",
        "--set", f"intercept_policy={policy}",
        "--set", "intercept_state=memory",
    ]
    if web:
        args += ["--set", "web_host=127.0.0.1", "--set", f"web_port={free_port()}",
                 "--set", "web_open_browser=false"]
    for option in extra_options:
        args += ["--set", option]
    return stack.add(Proc(tool, args, stack.workdir / f"{tool}.log"))


def wait_proxy(stack: Stack, proc: Proc) -> None:
    assert stack.proxy_port is not None
    proc.wait_for_port(stack.proxy_port)
    if proc.name == "mitmweb":
        stack.web_url = proc.wait_for(re.compile(r"Web server listening at (http://\S+)")).group(1)
    # Wait for the addon too: a policy error stops mitmdump only after the port is bound.
    proc.wait_for(re.compile(r"intercept: (policy \S+ loaded|NO POLICY)"), timeout=START_TIMEOUT)


def start_demo_stack(stack: Stack, *, policy: Path = DEFAULT_POLICY, port: int | None = None,
                     web: bool = False, log: Callable[[str], None] = print) -> Stack:
    """Fake API + mcp-sora + proxy, all ready, in ``stack`` (the caller closes it, also on failure)."""
    sora_python = setup_sora_venv()
    fake = start_fake(stack)
    fake_url = wait_fake(stack, fake)
    log(f"fake AceData API  {fake_url}  (pid {fake.pid})")
    # Start the proxy while mcp-sora imports (the proxy connects upstream lazily, per request).
    sora_port = free_port()
    sora = start_sora(stack, sora_python, fake_url, sora_port)
    proxy = start_proxy(stack, f"http://127.0.0.1:{sora_port}", policy=policy, port=port, web=web)
    wait_sora(stack, sora)
    log(f"mcp-sora          {stack.sora_url}/mcp  (pid {sora.pid}, its API = the fake)")
    wait_proxy(stack, proxy)
    log(f"{proxy.name:<17} {stack.proxy_url}  (pid {proxy.pid}, policy {_rel(policy)}, reverse -> mcp-sora)")
    if stack.web_url:
        log(f"mitmweb UI        {stack.web_url}")
    return stack


def start_upstream_stack(stack: Stack, upstream_url: str, *, policy: Path, port: int, web: bool) -> Stack:
    """Only the proxy, in front of any MCP server (the caller closes ``stack``)."""
    parts = urlsplit(upstream_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DemoError(f"--upstream must be an http(s) URL, got {upstream_url!r}")
    stack.mcp_path = parts.path.rstrip("/") or "/mcp"
    proxy = start_proxy(stack, f"{parts.scheme}://{parts.netloc}", policy=policy, port=port, web=web)
    wait_proxy(stack, proxy)
    return stack


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return str(path)


# -- the fake API's own counters ----------------------------------------------------------------


def fake_calls(fake_url: str) -> dict[str, Any]:
    """GET /_calls from the fake API, bypassing any proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{fake_url}/_calls", timeout=10) as resp:  # loopback only
        return json.load(resp)


def videos_count(fake_url: str) -> int:
    """How many ``POST /sora/videos`` requests reached the fake API."""
    return int(fake_calls(fake_url).get("by_path", {}).get(VIDEOS_PATH, 0))


# -- the scripted agent -----------------------------------------------------------------------------


@dataclass
class CallOutcome:
    """One tools/call as the agent saw it."""

    n: int
    session: str
    tool: str
    arguments: dict[str, Any]
    allowed: bool
    rule: str | None = None
    kind: str | None = None  # the policy's denial kind: rate_limit, condition, hidden, ...
    message: str = ""
    retry_after: int | float | None = None
    code: int | None = None
    data: Any = None
    label: str = ""  # what this call was meant to show


@contextlib.asynccontextmanager
async def agent_client(url: str, agent_id: str | None) -> AsyncIterator[Any]:
    """An official-SDK ``mcp.Client`` for ``url`` that sends ``X-Agent-Id: agent_id`` on every request."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {AGENT_HEADER: agent_id} if agent_id else {}
    # trust_env=False: the URL is the proxy itself; *_PROXY variables must not add another hop.
    http = httpx2.AsyncClient(headers=headers, trust_env=False,
                              timeout=httpx2.Timeout(CALL_TIMEOUT, read=CALL_TIMEOUT))
    async with http, Client(streamable_http_client(url, http_client=http),
                            read_timeout_seconds=CALL_TIMEOUT) as client:
        yield client


async def list_tool_names(client: Any) -> list[str]:
    result = await client.list_tools()
    return [tool.name for tool in result.tools]


async def call_tool(client: Any, n: int, session: str, tool: str, arguments: dict[str, Any],
                    label: str = "") -> CallOutcome:
    """Call a tool and record what came back: a result, or the proxy's (or server's) JSON-RPC error."""
    from mcp import MCPError

    outcome = CallOutcome(n, session, tool, arguments, allowed=False, label=label)
    try:
        result = await client.call_tool(tool, arguments)
    except MCPError as exc:
        outcome.code, outcome.message, outcome.data = exc.code, exc.message, exc.data
        if isinstance(exc.data, dict):
            outcome.rule = exc.data.get("rule")
            outcome.kind = exc.data.get("kind")
            outcome.retry_after = exc.data.get("retry_after")
        return outcome
    text = " ".join(getattr(c, "text", "") for c in result.content).strip()
    if result.is_error:
        outcome.kind = "tool_error"
        outcome.message = f"tool error: {text}"
        if text.startswith(DENIED_PREFIX):  # intercept_deny_as=result
            outcome.message = text
            outcome.kind = "policy_result"
        return outcome
    outcome.allowed = True
    outcome.message = _summarize_result(text)
    return outcome


def _summarize_result(text: str) -> str:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        payload = json.loads(text)
        if isinstance(payload, dict) and payload.get("task_id"):
            return f"ok, task {payload['task_id']}"
    return "ok: " + (text[:60] + "..." if len(text) > 60 else text)


def valid_image_args(i: int, session: str = "") -> dict[str, Any]:
    """Arguments the policy accepts; the prompt names the session (visible in the fake's request log)."""
    return {
        "prompt": f"{session} shot {i}: a paper kite lifts off a windy beach at dusk".strip(),
        "image_urls": ["https://example.invalid/kite.png"],
        "model": "sora-2",
        "size": "small",
        "duration": 10,
        "orientation": "landscape",
    }


INVALID_CALLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("bad model", {"prompt": "a kite", "image_urls": ["https://example.invalid/kite.png"], "model": "sora-9"}),
    ("bad duration", {"prompt": "a kite", "image_urls": ["https://example.invalid/kite.png"], "duration": 7}),
    ("missing image_urls", {"prompt": "a kite"}),
)


@dataclass
class ScenarioResult:
    listed: list[str]
    calls: list[CallOutcome]
    videos_before: int | None
    videos_after: int | None
    seconds: float

    @property
    def allowed(self) -> int:
        return sum(c.allowed for c in self.calls)

    @property
    def denied(self) -> int:
        return sum(not c.allowed for c in self.calls)

    @property
    def videos_delta(self) -> int | None:
        if self.videos_before is None or self.videos_after is None:
            return None
        return self.videos_after - self.videos_before


async def run_scenario(url: str, fake_url: str | None, *, agent1: str = "agent-1",
                       agent2: str = "agent-2") -> ScenarioResult:
    """The scripted agent (see the module docstring)."""
    t0 = time.monotonic()
    before = videos_count(fake_url) if fake_url else None
    calls: list[CallOutcome] = []
    async with asyncio.timeout(SCENARIO_TIMEOUT):
        async with agent_client(url, agent1) as client:
            listed = await list_tool_names(client)
            for i in range(1, AGENT1_CALLS + 1):
                label = "within the limit" if i <= RATE_LIMIT else "over the limit"
                calls.append(await call_tool(client, len(calls) + 1, agent1, IMAGE_TOOL, valid_image_args(i, agent1),
                                             label))
            for label, args in INVALID_CALLS:
                calls.append(await call_tool(client, len(calls) + 1, agent1, IMAGE_TOOL, args, label))
        async with agent_client(url, agent2) as client:
            for i in range(1, AGENT2_CALLS + 1):
                calls.append(await call_tool(client, len(calls) + 1, agent2, IMAGE_TOOL, valid_image_args(i, agent2),
                                             "own budget"))
    after = videos_count(fake_url) if fake_url else None
    return ScenarioResult(listed, calls, before, after, time.monotonic() - t0)


def check_scenario(result: ScenarioResult, *, all_tools: bool = True) -> list[str]:
    """Everything that differs from the expectations; empty if the demo proved its point."""
    problems: list[str] = []
    listed = set(result.listed)
    if HIDDEN_TOOLS & listed:
        problems.append(f"hidden tools were listed: {sorted(HIDDEN_TOOLS & listed)}")
    if all_tools and listed != VISIBLE_TOOLS:
        problems.append(f"tools/list showed {sorted(listed)}, expected {sorted(VISIBLE_TOOLS)}")

    n_invalid = len(INVALID_CALLS)
    agent1 = result.calls[:AGENT1_CALLS]
    invalid = result.calls[AGENT1_CALLS:AGENT1_CALLS + n_invalid]
    agent2 = result.calls[AGENT1_CALLS + n_invalid:]
    if len(result.calls) != AGENT1_CALLS + n_invalid + AGENT2_CALLS:
        problems.append(f"{len(result.calls)} calls were made, expected {AGENT1_CALLS + n_invalid + AGENT2_CALLS}")
    for c in agent1[:RATE_LIMIT]:
        if not c.allowed:
            problems.append(f"call #{c.n} ({c.session}, within the limit) was not allowed: {c.message}")
    for c in agent1[RATE_LIMIT:]:
        if c.allowed:
            problems.append(f"call #{c.n} ({c.session}, over the limit) was allowed")
        elif c.kind != "rate_limit" or not c.message.startswith(DENIED_PREFIX):
            problems.append(f"call #{c.n} ({c.session}) was not denied by the rate limit: {c.message}")
        elif not (isinstance(c.retry_after, (int, float)) and 0 < c.retry_after <= RATE_WINDOW):
            problems.append(f"call #{c.n} ({c.session}) has no sensible retry_after: {c.retry_after!r}")
    for c in invalid:
        if c.allowed:
            problems.append(f"call #{c.n} ({c.label}) was allowed")
        elif c.kind != "condition" or not c.message.startswith(DENIED_PREFIX):
            problems.append(f"call #{c.n} ({c.label}) was not rejected by argument validation: {c.message}")
    for c in agent2:
        if not c.allowed:
            problems.append(f"call #{c.n} ({c.session}) was not allowed: {c.message}")
    expected_upstream = RATE_LIMIT + AGENT2_CALLS
    if result.videos_delta is not None and result.videos_delta != expected_upstream:
        problems.append(f"the fake API received {result.videos_delta} POST {VIDEOS_PATH}, "
                        f"expected {expected_upstream} ({RATE_LIMIT} + {AGENT2_CALLS})")
    return problems


# -- output --------------------------------------------------------------------------------------


COLUMNS = ("#", "agent", "tool", "verdict", "rule", "message", "retry_after")


def table_rows(calls: Sequence[CallOutcome], collapse: int = 4) -> list[tuple[str, ...]]:
    """Table rows; runs of >= ``collapse`` allowed calls (same session and tool) become one counted row."""
    rows: list[tuple[str, ...]] = []
    i = 0
    while i < len(calls):
        c = calls[i]
        j = i
        if c.allowed:
            while j + 1 < len(calls) and calls[j + 1].allowed and calls[j + 1].session == c.session \
                    and calls[j + 1].tool == c.tool:
                j += 1
        if j - i + 1 >= collapse:
            rows.append((f"{c.n}-{calls[j].n}", c.session, c.tool, f"allowed x{j - i + 1}", "-",
                         f"calls {c.n}-{calls[j].n} allowed ({j - i + 1} calls), each answered by the server",
                         "-"))
            i = j + 1
            continue
        retry = "-" if c.retry_after is None else f"{c.retry_after} s"
        verdict = "allowed" if c.allowed else "DENIED"
        message = c.message if not c.label or c.allowed else f"({c.label}) {c.message}"
        rows.append((str(c.n), c.session, c.tool, verdict, c.rule or "-", message, retry))
        i += 1
    return rows


def _use_rich() -> bool:
    if not sys.stdout.isatty():
        return False
    try:
        import rich  # noqa: F401  (optional: nicer tables when present)
    except ImportError:
        return False
    return True


def print_table(calls: Sequence[CallOutcome]) -> None:
    rows = table_rows(calls)
    if _use_rich():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="tools/call through the proxy", show_lines=False)
        for col in COLUMNS:
            table.add_column(col, overflow="fold", no_wrap=col not in ("message", "rule"))
        for row in rows:
            style = "red" if row[3] == "DENIED" else "green"
            table.add_row(*row, style=style)
        Console().print(table)
        return
    widths = [max(len(col), *(len(r[k]) for r in rows)) for k, col in enumerate(COLUMNS)]
    order = (0, 1, 2, 3, 4, 6, 5)  # the long message last, so the columns stay aligned
    print("  ".join(COLUMNS[k].ljust(widths[k]) for k in order).rstrip())
    print("  ".join("-" * widths[k] for k in order))
    for row in rows:
        print("  ".join(row[k].ljust(widths[k]) for k in order).rstrip())


def print_report(result: ScenarioResult, *, all_tools: bool = True) -> list[str]:
    """Print the whole scenario; return the problems found (empty: all as expected)."""
    visible = sorted(result.listed)
    print(f"\ntools/list through the proxy ({len(visible)} tools):")
    for name in visible:
        print(f"  {name}")
    absent = sorted(HIDDEN_TOOLS - set(result.listed))
    print(f"hidden by the policy, absent from the list: {', '.join(absent) if absent else '(none!)'}")
    print()
    print_table(result.calls)
    rate_denied = sum(c.kind == "rate_limit" for c in result.calls)
    invalid_denied = sum(c.kind == "condition" for c in result.calls)
    print()
    print(f"totals: {len(result.calls)} calls, allowed {result.allowed}, denied {result.denied} "
          f"({rate_denied} by the rate limit, {invalid_denied} by argument validation)")
    for session in dict.fromkeys(c.session for c in result.calls):
        mine = [c for c in result.calls if c.session == session]
        print(f"  {session}: allowed {sum(c.allowed for c in mine)}, denied {sum(not c.allowed for c in mine)}")
    if result.videos_delta is not None:
        print(f"fake AceData API /_calls: POST {VIDEOS_PATH} received {result.videos_delta} "
              f"(expected {RATE_LIMIT + AGENT2_CALLS} = {RATE_LIMIT} + {AGENT2_CALLS}): "
              f"the {result.denied} denied calls never reached it")
    else:
        print("upstream request count: not checked (no fake API with --upstream)")
    print(f"scripted agent took {result.seconds:.1f} s")
    problems = check_scenario(result, all_tools=all_tools)
    print()
    if problems:
        print("RESULT: FAILED, the observed numbers differ from the expectations:")
        for p in problems:
            print(f"  - {p}")
    else:
        upstream = "" if result.videos_delta is None else f", upstream count {result.videos_delta}"
        print(f"RESULT: OK: {RATE_LIMIT} allowed then denials with retry_after for agent-1, "
              f"{len(INVALID_CALLS)} invalid calls rejected, agent-2 allowed{upstream}")
    return problems


def print_client_hints(stack: Stack) -> None:
    name = "sora-via-intercept" if stack.sora_url else "mcp-via-intercept"
    snippet = {"mcpServers": {name: {
        "type": "http", "url": stack.proxy_url, "headers": {AGENT_HEADER: "my-agent"}}}}
    print(f"\nproxy (MCP endpoint): {stack.proxy_url}")
    if stack.web_url:
        print(f"mitmweb UI:           {stack.web_url}")
    print(f"logs:                 {stack.workdir}")
    print(f"each agent process counts on its own; send a distinct {AGENT_HEADER} header to name agents yourself.")
    print(".mcp.json:")
    print(json.dumps(snippet, indent=2))


def wait_until_interrupted(stack: Stack) -> None:
    """Block until Ctrl-C or SIGTERM (the normal way to end), or until a child dies (an error)."""
    print("\nrunning; press Ctrl-C to stop", flush=True)
    try:
        while True:
            stack.check_alive()
            time.sleep(0.5)
    except (KeyboardInterrupt, _Terminated):
        print("\nstopping", flush=True)


# -- main -------------------------------------------------------------------------------------------


class _Terminated(BaseException):
    """SIGTERM: unwind like Ctrl-C so the finally blocks stop every child."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def run_async(coro: Any) -> Any:
    """``asyncio.run(coro)``; SIGTERM cancels it cleanly (like Ctrl-C) and raises ``_Terminated``."""

    async def wrapper() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        terminated = False

        def on_term() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_term)
        try:
            return await coro
        except asyncio.CancelledError:
            if terminated:
                raise _Terminated() from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)  # remove_signal_handler reset it to the default

    return asyncio.run(wrapper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m intercept_addon.demo.run",
        description="intercept-addon demo: the policy proxy in front of the real mcp-sora, with a scripted agent.",
        epilog="Exit status: 0 all as expected, 1 a difference or an error, 75 mcp-sora cannot be installed "
               "(package index unreachable), 130 interrupted.",
    )
    parser.add_argument("--upstream", metavar="URL",
                        help="put the proxy in front of this MCP server (e.g. http://127.0.0.1:8000/mcp) instead of "
                             "the demo stack; the scripted agent then runs only with --agent")
    parser.add_argument("--policy", metavar="FILE", type=Path, default=DEFAULT_POLICY,
                        help=f"policy YAML (default {_rel(DEFAULT_POLICY)})")
    parser.add_argument("--port", type=int, metavar="N",
                        help="proxy listen port on 127.0.0.1 (default and 0: a free port; 8080 with --upstream)")
    parser.add_argument("--web", action="store_true",
                        help="run mitmweb instead of mitmdump and print its UI URL")
    parser.add_argument("--agent", action="store_true", help="with --upstream: run the scripted agent too")
    parser.add_argument("--keep-running", action="store_true",
                        help="after the scripted agent, keep everything up until Ctrl-C")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    policy = args.policy.resolve()
    if not policy.is_file():
        print(f"error: policy file {args.policy} not found", file=sys.stderr)
        return 1
    if args.port is not None and not 0 <= args.port < 65536:
        print(f"error: --port {args.port} is not a port number", file=sys.stderr)
        return 1
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    stack = Stack(Path(tempfile.mkdtemp(prefix="intercept-demo-")))
    status = 1
    try:
        status = _run(args, policy, stack)
    except DemoError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        status = exc.status
    except (KeyboardInterrupt, _Terminated):
        print("\ninterrupted", file=sys.stderr)
        status = 130
    except BaseExceptionGroup as group:  # an interrupt that surfaced inside a task group
        if group.subgroup((KeyboardInterrupt, _Terminated)) is None:
            raise
        print("\ninterrupted", file=sys.stderr)
        status = 130
    finally:
        try:
            stack.close()  # every process this run started, by PID
        finally:
            signal.signal(signal.SIGTERM, previous)
        if status == 0 and not (args.keep_running or args.upstream):
            shutil.rmtree(stack.workdir, ignore_errors=True)
        else:
            print(f"logs kept in {stack.workdir}", file=sys.stderr)
    return status


def _run(args: argparse.Namespace, policy: Path, stack: Stack) -> int:
    t0 = time.monotonic()
    if args.upstream:
        port = 8080 if args.port is None else args.port
        start_upstream_stack(stack, args.upstream, policy=policy, port=port, web=args.web)
        proc = stack.procs[0]
        print(f"{proc.name} (pid {proc.pid}) on {stack.proxy_url} -> {stack.upstream}, policy {_rel(policy)}")
        status = 0
        if args.agent:
            result = run_async(run_scenario(stack.proxy_url, None))
            status = 1 if print_report(result, all_tools=False) else 0
        if not args.agent or args.keep_running or args.web:
            print_client_hints(stack)
            wait_until_interrupted(stack)
        return status

    print("intercept-addon demo: mitmproxy + policy in front of the real mcp-sora\n")
    start_demo_stack(stack, policy=policy, port=args.port, web=args.web)
    print(f"stack ready after {time.monotonic() - t0:.1f} s")
    assert stack.fake_url is not None
    result = run_async(run_scenario(stack.proxy_url, stack.fake_url))
    stack.check_alive()
    problems = print_report(result)
    print(f"total demo time {time.monotonic() - t0:.1f} s")
    if args.keep_running:
        print_client_hints(stack)
        wait_until_interrupted(stack)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
