"""The hostile upstream (tests/servers/hostile_upstream.py) behind a real mitmdump, and the two
SDK clients reduced to "which tools does it list", for tests/test_hostile_answers_e2e.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client

from harness import ROOT, Process, free_port, start_mitmdump, wait_for_port

NODE = shutil.which("node")
TS_CLIENT = ROOT / "tests/ts/client.mjs"


class Hostile:
    """The hostile upstream and a mitmdump in front of it (reverse mode)."""

    def __init__(self, tmp: Path, policy: str):
        (tmp / "policy.yaml").write_text(policy)
        self.upstream_port = free_port()
        self.upstream = Process([sys.executable, str(ROOT / "tests/servers/hostile_upstream.py"),
                                 "--port", str(self.upstream_port)], tmp / "hostile-upstream.log")
        wait_for_port(self.upstream_port, self.upstream.proc)
        self.proxy, self.proxy_port = start_mitmdump(tmp, self.upstream_port, "intercept_state=memory",
                                                     policy=tmp / "policy.yaml")
        self.control = httpx2.Client(base_url=f"http://127.0.0.1:{self.upstream_port}", trust_env=False, timeout=5)
        self.client = httpx2.Client(trust_env=False, timeout=5)

    def reset(self) -> None:
        """Forget the upstream's queued answers and its log."""
        self.control.post("/__reset").raise_for_status()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/mcp"

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}/mcp"

    def answer(self, key: str, *parts: str | dict, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """Queue the upstream's answer to the next request under ``key`` (a JSON-RPC method, or GET)."""
        order = {"key": key, "answer": {"status": status, "headers": headers or {}, "parts": list(parts)}}
        self.control.post("/__answer", json=order).raise_for_status()

    def received(self) -> list[dict]:
        """JSON-RPC bodies that reached the upstream, in order."""
        bodies = []
        for entry in self.control.get("/__log").json():
            try:
                bodies.append(json.loads(entry["body"]))
            except ValueError:
                pass
        return bodies

    def post(self, body: str, timeout: float = 5) -> httpx2.Response:
        """POST a raw JSON-RPC body through the proxy; the whole answer is read."""
        return self.client.post(self.url, content=body, timeout=timeout, headers={
            "content-type": "application/json", "accept": "application/json, text/event-stream"})

    def stop(self) -> None:
        self.control.close()
        self.client.close()
        self.proxy.stop()
        self.upstream.stop()


async def python_sdk_tools(url: str) -> set[str] | str:
    """Tool names the official Python SDK client lists at ``url`` (initialize first), or the
    message of the error it raised."""
    http = httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(5))
    try:
        with anyio.fail_after(10):
            async with http, mcp.Client(streamable_http_client(url, http_client=http), mode="legacy") as c:
                return {t.name for t in (await c.list_tools()).tools}
    except mcp.MCPError as exc:
        return exc.message
    except BaseExceptionGroup as group:  # the SDK's task group wraps an error raised while listing
        found = group.subgroup(mcp.MCPError)
        if found is None:
            raise
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        return found.message


def ts_sdk_tools(url: str) -> list[str] | str:
    """Tool names the TypeScript SDK client (tests/ts/client.mjs) lists at ``url``, or its error."""
    if not NODE or not (ROOT / "tests/ts/node_modules/@modelcontextprotocol/sdk").is_dir():
        pytest.skip("needs node and the npm packages: npm ci --prefix tests/ts")
    out = subprocess.run([NODE, str(TS_CLIENT), "streamable", url, '[{"list": "tools"}]'],
                         capture_output=True, text=True, timeout=20)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    step = next((line for line in lines if "step" in line), None)
    assert step is not None, f"TS client failed: {out.stdout} {out.stderr}"
    return step["result"] if "result" in step else step["error"]["message"]


def hostile_fixtures(policy: str, name: str):  # type: ignore[no-untyped-def]
    """The module-scoped ``stack`` (one hostile upstream + mitmdump with ``policy``) and the
    per-test ``hostile`` fixture (the stack, reset): ``stack, hostile = hostile_fixtures(...)``."""

    @pytest.fixture(scope="module")
    def stack(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
        running = Hostile(tmp_path_factory.mktemp(name), policy)
        yield running
        running.stop()

    @pytest.fixture
    def hostile(stack: Hostile) -> Hostile:
        stack.reset()
        return stack

    return stack, hostile


def event(data: str, *, name: str | None = "message", event_id: str | None = None) -> str:
    """One event-stream frame carrying ``data``."""
    lines = ([f"id: {event_id}"] if event_id else []) + ([f"event: {name}"] if name else []) + [f"data: {data}"]
    return "\n".join(lines) + "\n\n"

