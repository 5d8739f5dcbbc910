"""Interoperability with the TypeScript MCP SDK (npm @modelcontextprotocol/sdk, pinned in tests/ts).

Two directions, both through a real mitmdump with the addon:
* the TypeScript client (tests/ts/client.mjs) against the Python test server, over Streamable
  HTTP and the legacy HTTP+SSE transport: it must see our denials as McpError (or as an isError
  result), hidden tools gone, and its connection alive after a denial;
* the TypeScript reference server (@modelcontextprotocol/server-everything, forced onto
  127.0.0.1) in both of its HTTP modes, driven by the TypeScript and the Python SDK clients.

server-everything has no side-effect log, so the denied tool is one whose effect is visible
through MCP itself: gzip-file-as-resource registers a session resource, which resources/list
shows (a control call straight to the server proves that observation works).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import mcp
import pytest

from harness import ROOT, Process, clean_env, free_port, ran, start_mitmdump, wait_for_port
from test_addon_e2e import client as py_streamable_client
from test_legacy_sse import session as py_legacy_session

pytestmark = pytest.mark.e2e

TS = ROOT / "tests/ts"
NODE = shutil.which("node")
DENIED = "[INTERCEPT POLICY DENIED] Deleting everything is not allowed"
GZIP_DENIED = "[INTERCEPT POLICY DENIED] Compressing files is not allowed"

EVERYTHING_POLICY = """\
version: "1"
description: policy for the TypeScript reference server
hide: [get-env]
tools:
  gzip-file-as-resource:
    rules:
      - name: no gzip
        action: deny
        on_deny: "Compressing files is not allowed"
"""
# Transport name in client.mjs -> (test server transport, path) / server-everything mode.
PY_SERVER = {"streamable": ("streamable-http", "/mcp"), "sse": ("sse", "/sse")}
EVERYTHING = {"streamable": ("streamableHttp", "/mcp"), "sse": ("sse", "/sse")}


@pytest.fixture(autouse=True)
def need_node() -> None:
    if NODE and (TS / "node_modules/@modelcontextprotocol/sdk").is_dir() \
            and (TS / "node_modules/@modelcontextprotocol/server-everything").is_dir():
        return
    message = "needs node and the npm packages: npm ci --prefix tests/ts"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def ts_client(kind: str, url: str, *steps: dict) -> list[dict]:
    """Run the TypeScript client; one outcome ({"result": ...} or {"error": ...}) per step."""
    proc = subprocess.run([NODE, str(TS / "client.mjs"), kind, url, json.dumps(steps)], cwd=TS,
                          env=clean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["connected"] == kind
    assert [line["step"] for line in lines[1:]] == list(steps)
    return lines[1:]


def call(tool: str, **args: object) -> dict:
    return {"call": tool, "args": args}


def text_of(outcome: dict) -> str:
    assert "error" not in outcome, outcome
    assert not outcome["result"].get("isError"), outcome
    return outcome["result"]["content"][0]["text"]


def mcp_error(outcome: dict) -> dict:
    assert "result" not in outcome, outcome
    assert outcome["error"]["type"] == "McpError", outcome
    return outcome["error"]


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


# -- the TypeScript client against the Python test server -----------------------------------------

@pytest.mark.parametrize("kind", PY_SERVER)
def test_ts_client_against_python_server(stack_factory, kind):
    transport, path = PY_SERVER[kind]
    stack = stack_factory(transport=transport)
    url = f"http://127.0.0.1:{stack.proxy_port}{path}"
    out = ts_client(kind, url, {"list": "tools"}, call("echo", text="hello"), call("delete_everything"),
                    call("echo", text="again"), call("secret_admin"), call("charge", amount=501),
                    *(call("generate", prompt=f"p{i}") for i in range(4)))
    tools, echo, delete, again, secret, charge, *generate = out

    assert "secret_admin" not in tools["result"] and {"echo", "delete_everything"} <= set(tools["result"])
    assert text_of(echo) == "hello"
    err = mcp_error(delete)
    # The TS SDK prefixes McpError messages with "MCP error <code>: ".
    assert err["code"] == -32600 and err["message"] == f"MCP error -32600: {DENIED}"
    assert err["data"]["rule"] == "no deletes" and err["data"]["tool"] == "delete_everything"
    assert text_of(again) == "again"  # the connection survives the denial
    err = mcp_error(secret)
    assert err["code"] == -32602 and err["message"] == "MCP error -32602: Unknown tool: secret_admin"
    assert "Charges above 500" in mcp_error(charge)["message"]
    assert [text_of(g) for g in generate[:3]] == ["generated p0", "generated p1", "generated p2"]
    err = mcp_error(generate[3])
    assert err["data"]["rule"] == "generate limit" and 0 < err["data"]["retry_after"] <= 60

    # A new connection is a new session (Mcp-Session-Id / legacy sessionId) with its own budget.
    assert text_of(ts_client(kind, url, call("generate", prompt="other"))[0]) == "generated other"

    side = ran(stack.side_log)
    assert side == ["echo", "echo", "generate", "generate", "generate", "generate"]


@pytest.mark.parametrize("kind", PY_SERVER)
def test_ts_client_deny_as_result(stack_factory, kind):
    transport, path = PY_SERVER[kind]
    stack = stack_factory(options=("intercept_state=memory", "intercept_deny_as=result"), transport=transport)
    denied, after = ts_client(kind, f"http://127.0.0.1:{stack.proxy_port}{path}",
                              call("delete_everything"), call("echo", text="ok"))
    # The tool has an outputSchema; the TS client accepts an isError result without structuredContent.
    assert denied["result"] == {"content": [{"type": "text", "text": DENIED}], "isError": True}
    assert text_of(after) == "ok"
    assert ran(stack.side_log) == ["echo"]


# -- the TypeScript reference server ---------------------------------------------------------------

class Everything:
    """server-everything on 127.0.0.1 behind mitmdump with EVERYTHING_POLICY."""

    def __init__(self, tmp: Path, kind: str):
        self.kind = kind
        mode, self.path = EVERYTHING[kind]
        self.server_port = free_port()
        entry = TS / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
        # It listens on every interface (app.listen(PORT)); the preload makes that 127.0.0.1.
        self.server = Process([NODE, "-r", str(TS / "force-loopback.cjs"), str(entry), mode],
                              tmp / f"everything-{self.server_port}.log",
                              env=clean_env(PORT=str(self.server_port)), cwd=TS)
        self.proxy: Process | None = None
        wait_for_port(self.server_port, self.server.proc)
        policy = tmp / "everything.yaml"
        policy.write_text(EVERYTHING_POLICY)
        self.proxy, self.proxy_port = start_mitmdump(tmp, self.server_port, "intercept_state=memory", policy=policy)

    def url(self, *, direct: bool = False) -> str:
        return f"http://127.0.0.1:{self.server_port if direct else self.proxy_port}{self.path}"

    def stop(self) -> None:
        for proc in (self.proxy, self.server):
            if proc is not None:
                proc.stop()


@pytest.fixture(params=list(EVERYTHING))
def everything(request, tmp_path):
    server = Everything(tmp_path, request.param)
    yield server
    server.stop()


def test_everything_listens_on_loopback_only(everything):
    assert listening_addresses(everything.server_port) == {"0100007F"}  # 127.0.0.1, no 0.0.0.0 / ::


def test_everything_ts_client(everything):
    kind = everything.kind
    # Control, straight to the server: the tool's effect (a session resource) is observable.
    made, listed = ts_client(kind, everything.url(direct=True),
                             call("gzip-file-as-resource", name="control.gz", data="data:text/plain,x"),
                             {"list": "resources"})
    assert made["result"]["content"][0]["uri"] == "demo://resource/session/control.gz"
    assert "demo://resource/session/control.gz" in listed["result"]

    tools, echo, gzip, resources, env, again = ts_client(
        kind, everything.url(), {"list": "tools"}, call("echo", message="hello"),
        call("gzip-file-as-resource", name="denied.gz", data="data:text/plain,x"),
        {"list": "resources"}, call("get-env"), call("get-sum", a=2, b=3))
    assert "get-env" not in tools["result"] and {"echo", "gzip-file-as-resource"} <= set(tools["result"])
    assert text_of(echo) == "Echo: hello"
    err = mcp_error(gzip)
    assert err["code"] == -32600 and err["message"] == f"MCP error -32600: {GZIP_DENIED}"
    assert err["data"]["rule"] == "no gzip"
    assert not [uri for uri in resources["result"] if uri.startswith("demo://resource/session/")]
    assert mcp_error(env)["code"] == -32602
    assert text_of(again) == "The sum of 2 and 3 is 5."
    log = everything.proxy.output()
    assert "deny tool=gzip-file-as-resource" in log
    if kind == "sse":  # legacy: the agent is the node process; every POST got 202, the denial came on the stream
        assert re.search(r'deny tool=gzip-file-as-resource agent="process:\d+@\d+" ', log)  # the node client
        statuses = re.findall(r"POST \S+/message\?sessionId=\S+\n\s+<< (\d+)", log)
        assert len(statuses) >= 5 and set(statuses) == {"202"}


async def test_everything_python_client(everything):
    url = everything.url()
    sessions = {"streamable": lambda: py_streamable_client(url, "auto"), "sse": lambda: py_legacy_session(url)}
    async with sessions[everything.kind]() as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "get-env" not in tools and {"echo", "gzip-file-as-resource"} <= tools
        assert (await c.call_tool("echo", {"message": "py"})).content[0].text == "Echo: py"
        with pytest.raises(mcp.MCPError) as info:
            await c.call_tool("gzip-file-as-resource", {"name": "py-denied.gz", "data": "data:text/plain,x"})
        assert info.value.message == GZIP_DENIED and info.value.data["rule"] == "no gzip"
        resources = [str(r.uri) for r in (await c.list_resources()).resources]
        assert resources and not [uri for uri in resources if uri.startswith("demo://resource/session/")]
        assert (await c.call_tool("get-sum", {"a": 1, "b": 1})).content[0].text == "The sum of 1 and 1 is 2."
