"""``intercept-addon stdio``: real stdio servers behind a real mitmdump with the addon, driven by
the official Python SDK's stdio client, as an agent's config would start them.

* the real mcp-sora in its default stdio mode, its API the demo's fake (whose ``/_calls`` proves
  which calls reached it), under the project's policy;
* the TypeScript reference server (server-everything, stdio): sampling, elicitation, roots and progress
  through the proxy, a denied and a hidden tool;
* the lifecycle: a hang-up, SIGTERM or SIGKILL leaves no process behind (checked by pid), the
  bridge refuses a request without the proxy's secret, the server keeps no descriptor of ours,
  a server that exits ends the run;
* one ``--serve`` proxy shared by two wrappers, each server bound to its policy by its path;
* a raw stdio server's lines reach the agent byte for byte and in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest
from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters, stdio_client

from harness import clean_env, free_port, wait_for_port
from intercept_addon.demo import run as demo

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
TS = ROOT / "tests" / "ts"
EVERYTHING = TS / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
NODE = shutil.which("node")
EVERYTHING_POLICY = """\
version: "1"
description: server-everything over stdio
hide: [get-env]
tools:
  get-sum:
    rules:
      - name: small sums
        conditions:
          - {path: args.a, op: lte, value: 10}
        on_deny: "Only small sums"
"""


def wrapper(tmp: Path, policy: Path | None, *server: str, options: tuple[str, ...] = ()) -> list[str]:
    """The command line an agent's config would hold."""
    return [sys.executable, "-m", "intercept_addon", "stdio", *(["--policy", str(policy)] if policy else []),
            "--set", f"confdir={tmp / 'mitmproxy'}", "--set", "intercept_state=memory", *options, "--", *server]


@contextlib.asynccontextmanager
async def agent(command: list[str], tmp: Path, env: dict[str, str], **callbacks: Any) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(tmp))
    with open(tmp / "wrapper-stderr.log", "a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=30, **callbacks) as client:
            yield client


# -- mcp-sora -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sora(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(.venv-sora's mcp-sora, the fake API's URL)."""
    stack = demo.Stack(tmp_path_factory.mktemp("stdio-sora"))
    try:
        try:
            sora_python = demo.setup_sora_venv()
        except demo.DemoError as exc:
            if exc.status == demo.SETUP_UNREACHABLE:
                pytest.skip(f"cannot install mcp-sora: {exc}")
            raise
        fake_url = demo.wait_fake(stack, demo.start_fake(stack))
        yield sora_python.parent / "mcp-sora", fake_url
    finally:
        stack.close()


def sora_env(fake_url: str) -> dict[str, str]:
    return clean_env(ACEDATACLOUD_API_BASE_URL=fake_url, ACEDATACLOUD_API_TOKEN="demo-token")


def image_requests(fake_url: str, tag: str) -> int:
    return sum(1 for r in demo.fake_calls(fake_url)["requests"]
               if r["path"] == demo.VIDEOS_PATH and isinstance(r.get("body"), dict)
               and str(r["body"].get("prompt", "")).startswith(f"{tag} shot "))


async def test_mcp_sora_over_stdio_under_the_policy(sora: tuple[Path, str], tmp_path: Path) -> None:
    mcp_sora, fake_url = sora
    outcomes = []
    async with agent(wrapper(tmp_path, demo.DEFAULT_POLICY, str(mcp_sora)), tmp_path, sora_env(fake_url)) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        for i in range(1, 36):
            outcomes.append(await demo.call_tool(client, i, "stdio", demo.IMAGE_TOOL,
                                                 demo.valid_image_args(i, "stdio-sora")))
        hidden = await demo.call_tool(client, 36, "stdio", "sora_generate_video_async", {"prompt": "x"})

    assert listed == demo.VISIBLE_TOOLS and len(listed) == 8
    assert [c.allowed for c in outcomes] == [True] * 30 + [False] * 5
    assert image_requests(fake_url, "stdio-sora") == 30  # the 5 denied never reached the API
    denied = outcomes[30]
    assert denied.code == -32600
    assert denied.message.startswith(demo.DENIED_PREFIX), denied.message
    assert "limited to 30 calls per minute" in denied.message
    assert denied.data["rule"] == "image-to-video rate limit" and denied.data["kind"] == "rate_limit"
    assert (hidden.code, hidden.message) == (-32602, "Unknown tool: sora_generate_video_async")  # hidden = unknown
    log = (tmp_path / "wrapper-stderr.log").read_text()
    assert "intercept: policy" in log and "/stdio/mcp-sora/mcp" in log


# -- server-everything -------------------------------------------------------------------------------


@pytest.fixture
def everything(tmp_path: Path) -> list[str]:
    if not (NODE and EVERYTHING.is_file()):
        if os.environ.get("CI"):
            pytest.fail("needs node and the npm packages: npm ci --prefix tests/ts")
        pytest.skip("needs node and the npm packages: npm ci --prefix tests/ts")
    policy = tmp_path / "everything.yaml"
    policy.write_text(EVERYTHING_POLICY)
    return wrapper(tmp_path, policy, NODE, str(EVERYTHING), "stdio")


async def test_everything_sampling_elicitation_roots_progress_and_denials(everything: list[str], tmp_path: Path) -> None:
    import mcp.types as types

    sampled: list[str] = []
    roots_asked: list[bool] = []
    progress: list[float] = []
    asked: list[str] = []

    async def sampling(context: Any, params: Any) -> Any:
        sampled.append(params.messages[0].content.text)
        return types.CreateMessageResult(role="assistant", model="stdio-test-model",
                                         content=types.TextContent(type="text", text="sampled through the proxy"))

    async def roots(context: Any) -> Any:
        roots_asked.append(True)
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/stdio-root", name="stdio-root")])

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async def elicitation(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return types.ElicitResult(action="decline")

    async with agent(everything, tmp_path, clean_env(), sampling_callback=sampling,
                     list_roots_callback=roots, elicitation_callback=elicitation) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        sample = await client.call_tool("trigger-sampling-request", {"prompt": "kites", "maxTokens": 20})
        steps = await client.call_tool("trigger-long-running-operation", {"duration": 0.6, "steps": 3},
                                       progress_callback=on_progress)
        small = await client.call_tool("get-sum", {"a": 2, "b": 3})
        with pytest.raises(MCPError) as denied:
            await client.call_tool("get-sum", {"a": 20, "b": 3})
        with pytest.raises(MCPError):
            await client.call_tool("get-env", {})
        root_list = await client.call_tool("get-roots-list", {})
        declined = await client.call_tool("trigger-elicitation-request", {})
        echo = await client.call_tool("echo", {"message": "still here"})

    assert "get-env" not in listed and {"echo", "trigger-sampling-request", "get-sum"} <= listed
    assert sampled == ["Resource trigger-sampling-request context: kites"]
    assert "sampled through the proxy" in sample.content[0].text  # the answer went back to the server
    assert progress == [1, 2, 3] and not steps.is_error
    assert "5" in small.content[0].text
    assert denied.value.code == -32600 and denied.value.message.startswith("[INTERCEPT POLICY DENIED]")
    assert "Only small sums" in denied.value.message
    assert roots_asked and "stdio-root" in " ".join(c.text for c in root_list.content)
    assert asked == ["Please provide inputs for the following fields:"]
    assert "declined" in declined.content[0].text  # our answer reached the server
    assert echo.content[0].text == "Echo: still here"
    assert "Starting default (STDIO) server" in (tmp_path / "wrapper-stderr.log").read_text()  # its stderr


# -- lifecycle ---------------------------------------------------------------------------------------

INITIALIZE = (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
              b'"capabilities":{},"clientInfo":{"name":"stdio-test","version":"1"}}}\n')


class Wrapped:
    """The wrapper started as an agent would, on raw pipes (no SDK cleans up after it)."""

    def __init__(self, command: list[str], tmp: Path, env: dict[str, str], *, initialize: bool = True):
        self.stderr_path = tmp / "raw-wrapper-stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=env, cwd=tmp)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.answer = b""
        if initialize:
            self.proc.stdin.write(INITIALIZE)
            self.proc.stdin.flush()
            self.answer = self.proc.stdout.readline()  # the first answer: everything is up
        self.descendants = [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        for pid in [self.proc.pid, *self.descendants]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def alive(pids: list[int], timeout: float = 10) -> list[int]:
    """The pids still running (zombies are not) after waiting up to ``timeout`` for them to go."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["hang-up", "SIGTERM", "SIGKILL"])
def test_nothing_is_left_behind(everything: list[str], tmp_path: Path, how: str) -> None:
    wrapped = Wrapped(everything, tmp_path, clean_env())
    try:
        assert b'"id":1' in wrapped.answer and b"serverInfo" in wrapped.answer
        names = {psutil.Process(pid).name() for pid in wrapped.descendants}
        assert {"node", "mitmdump"} <= names, names  # the server and the proxy, found by pid
        if how == "hang-up":
            assert wrapped.proc.stdin is not None
            wrapped.proc.stdin.close()
            assert wrapped.wait() == 0
        else:
            wrapped.proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
            wrapped.wait()
        left = alive(wrapped.descendants)
        assert left == [], (left, names, wrapped.stderr()[-3000:])
    finally:
        wrapped.kill()


def test_the_bridge_answers_only_the_proxy(everything: list[str], tmp_path: Path) -> None:
    """Found on loopback, the bridge refuses whoever lacks the per-run secret; through the proxy
    the same path works."""
    wrapped = Wrapped(everything, tmp_path, clean_env())
    try:
        assert b"serverInfo" in wrapped.answer
        bridge = re.search(r"bridge on (http://127\.0\.0\.1:\d+/stdio/index/mcp)", wrapped.stderr()).group(1)
        proxied = re.search(r"behind (http://127\.0\.0\.1:\d+/stdio/index/mcp)", wrapped.stderr()).group(1)
        ping = b'{"jsonrpc":"2.0","id":7,"method":"ping"}'
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        with httpx2.Client(trust_env=False, timeout=10) as http:
            direct = http.post(bridge, content=ping, headers=headers)
            guessed = http.post(bridge, content=ping, headers={**headers, "x-intercept-stdio-secret": "guess"})
            with http.stream("POST", proxied, content=ping, headers=headers) as through:
                body = b"".join(through.iter_bytes())
        assert direct.status_code == guessed.status_code == 403
        assert through.status_code == 200 and b'"id":7' in body
    finally:
        wrapped.kill()


def test_the_server_holds_only_its_stdio(tmp_path: Path) -> None:
    """The wrapped command inherits no descriptor beyond 0, 1 and 2 (its own listdir adds one)."""
    probe = ("import os, sys; print('fds', sorted(os.listdir('/proc/self/fd'), key=int), file=sys.stderr, "
             "flush=True); sys.stdin.read()")
    wrapped = Wrapped(wrapper(tmp_path, None, sys.executable, "-c", probe), tmp_path, clean_env(), initialize=False)
    try:
        deadline = time.monotonic() + 30
        while "behind http://" not in wrapped.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert wrapped.proc.stdin is not None
        wrapped.proc.stdin.close()
        assert wrapped.wait() == 0
        assert "fds ['0', '1', '2', '3']" in wrapped.stderr()
    finally:
        wrapped.kill()


def test_a_killed_wrapper_takes_an_idle_server_and_proxy_along(tmp_path: Path) -> None:
    """SIGKILL leaves the wrapper no time to clean up, and a server that ignores its stdin and a
    proxy with no connection notice no broken pipe: the kernel's parent-death signal stops them."""
    sleeper = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"
    wrapped = Wrapped(wrapper(tmp_path, None, sys.executable, "-c", sleeper), tmp_path, clean_env(),
                      initialize=False)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while "behind http://" not in wrapped.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        children = [p.pid for p in psutil.Process(wrapped.proc.pid).children(recursive=True)]
        assert len(children) == 2, children  # the sleeper and mitmdump
        wrapped.proc.send_signal(signal.SIGKILL)
        wrapped.wait()
        assert alive(children) == []
    finally:
        wrapped.descendants = children
        wrapped.kill()


# -- one proxy for several servers ---------------------------------------------------------------------


SHARED_POLICIES = {
    "one.yaml": """\
version: "1"
servers: ["http://127.0.0.1:*/stdio/one/mcp"]
hide: [get-env]
tools:
  get-sum:
    rules:
      - name: small sums
        conditions:
          - {path: args.a, op: lte, value: 10}
        on_deny: "Only small sums"
""",
    "two.yaml": """\
version: "1"
servers: ["http://127.0.0.1:*/stdio/two/mcp"]
tools:
  echo:
    rules:
      - name: no echo
        action: deny
        on_deny: "No echo on two"
""",
}


async def test_one_shared_proxy_serves_two_wrapped_servers(everything: list[str], tmp_path: Path) -> None:
    """``--serve`` runs the proxy; two wrappers with ``--proxy`` go through it. Each policy binds
    its server by the bridge's path (``servers:``), one decision log holds both servers' calls,
    each wrapper is its own agent, and their bridges still refuse a request without their secret."""
    port = free_port()
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in SHARED_POLICIES.items():
        (policies / name).write_text(text)
    serve = subprocess.Popen([sys.executable, "-m", "intercept_addon", "stdio", "--serve", "--port", str(port),
                              "--policy", str(policies), "--set", f"confdir={tmp_path / 'shared'}",
                              "--set", "intercept_state=memory"],
                             stdout=open(tmp_path / "shared.log", "wb"), stderr=subprocess.STDOUT, env=clean_env())
    try:
        wait_for_port(port, serve)
        deadline = time.monotonic() + 30
        while "intercept: polic" not in (tmp_path / "shared.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        server = everything[everything.index("--") + 1:]
        shared = ["--proxy", f"http://127.0.0.1:{port}"]
        one = [sys.executable, "-m", "intercept_addon", "stdio", *shared, "--name", "one", "--", *server]
        two = [sys.executable, "-m", "intercept_addon", "stdio", *shared, "--name", "two", "--", *server]
        async with agent(one, tmp_path, clean_env()) as first, agent(two, tmp_path, clean_env()) as second:
            assert "is 3" in (await first.call_tool("get-sum", {"a": 1, "b": 2})).content[0].text
            with pytest.raises(MCPError) as big_sum:
                await first.call_tool("get-sum", {"a": 50, "b": 2})
            assert (await first.call_tool("echo", {"message": "hi"})).content[0].text == "Echo: hi"
            assert "get-env" not in {tool.name for tool in (await first.list_tools()).tools}
            assert "is 52" in (await second.call_tool("get-sum", {"a": 50, "b": 2})).content[0].text
            with pytest.raises(MCPError) as echo:
                await second.call_tool("echo", {"message": "hi"})
            assert "get-env" in {tool.name for tool in (await second.list_tools()).tools}
            log = (tmp_path / "wrapper-stderr.log").read_text()
            bridges = re.findall(r"behind (http://127\.0\.0\.1:\d+/stdio/(?:one|two)/mcp) through", log)
            assert len(bridges) == 2
            with httpx2.Client(trust_env=False, timeout=10) as http:
                refused = [http.post(url, content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                                     headers={"content-type": "application/json",
                                              "accept": "application/json, text/event-stream"}).status_code
                           for url in bridges]
        assert big_sum.value.message.startswith("[INTERCEPT POLICY DENIED]") and "Only small sums" in big_sum.value.message
        assert echo.value.message.startswith("[INTERCEPT POLICY DENIED]") and "No echo on two" in echo.value.message
        assert refused == [403, 403]
        decisions = [json.loads(line) for line in (tmp_path / "shared" / "intercept-decisions.jsonl")
                     .read_text().splitlines()]
        denials = {d["tool"]: d for d in decisions if d["decision"] == "deny"}
        assert set(denials) == {"get-sum", "echo"} and denials["get-sum"]["agent"] != denials["echo"]["agent"]
        proxied = (tmp_path / "shared.log").read_text()
        assert "/stdio/one/mcp" in proxied and "/stdio/two/mcp" in proxied
    finally:
        serve.terminate()
        serve.wait(10)


RAW_SERVER = r'''
import json, sys
print("not JSON-RPC: a stray print", flush=True)
for line in sys.stdin:
    message = json.loads(line)
    if message.get("method") == "initialize":
        print('{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"before"}}')
        print('{"id": 1,  "jsonrpc": "2.0", "result": {"protocolVersion": "2025-06-18", "capabilities": {}, '
              '"serverInfo": {"name": "raw", "version": "1"}, "x": 1.50, "s": "caf\\u00e9 \u00e9"}}', flush=True)
'''


def test_messages_pass_byte_for_byte_and_in_order(tmp_path: Path) -> None:
    """What the server writes reaches the agent as written (spacing, key order, escapes, number
    spelling), a notification before the answer stays before it, and a line that is not JSON is
    dropped with a note on stderr instead of breaking the agent's stream."""
    command = wrapper(tmp_path, None, sys.executable, "-c", RAW_SERVER, options=("--name", "raw"))
    wrapped = Wrapped(command, tmp_path, clean_env())
    try:
        assert wrapped.proc.stdout is not None and wrapped.proc.stdin is not None
        second = wrapped.proc.stdout.readline()
        assert wrapped.answer == (b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info",'
                                  b'"data":"before"}}\n')
        assert second == ('{"id": 1,  "jsonrpc": "2.0", "result": {"protocolVersion": "2025-06-18", '
                          '"capabilities": {}, "serverInfo": {"name": "raw", "version": "1"}, "x": 1.50, '
                          '"s": "caf\\u00e9 \u00e9"}}\n').encode()
        wrapped.proc.stdin.close()
        assert wrapped.wait() == 0
        assert "dropped a line that is not JSON from the server: b'not JSON-RPC: a stray print'" in wrapped.stderr()
    finally:
        wrapped.kill()


def test_a_server_that_exits_ends_the_run_with_its_status(tmp_path: Path) -> None:
    """The agent sees our stdout close, gets the server's exit status, and the proxy is stopped."""
    quitter = "import sys, time; sys.stdin.readline(); time.sleep(1); sys.exit(3)"
    wrapped = Wrapped(wrapper(tmp_path, None, sys.executable, "-c", quitter), tmp_path, clean_env(),
                      initialize=False)
    try:
        deadline = time.monotonic() + 30
        while "behind http://" not in wrapped.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        wrapped.descendants = [p.pid for p in psutil.Process(wrapped.proc.pid).children(recursive=True)]
        assert wrapped.proc.stdin is not None and wrapped.proc.stdout is not None
        wrapped.proc.stdin.write(INITIALIZE)  # the server reads it, answers nothing and exits
        wrapped.proc.stdin.flush()
        assert wrapped.proc.stdout.read() == b""
        assert wrapped.wait() == 3
        assert alive(wrapped.descendants) == []
        assert "exited (3)" in wrapped.stderr()
    finally:
        wrapped.kill()
