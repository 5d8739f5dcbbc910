"""One mitmdump in regular proxy mode in front of three real MCP servers (the official SDK's
test server, three processes with the same tools), policies in one directory:

- a.yaml governs server A (denies delete_everything, 2 generate calls a minute, hides secret_admin);
- b.yaml governs server B (denies echo, nothing else);
- server C is named by no policy.

A denial, a limit or a hidden tool of one server never touches the other; the third server gets
what ``intercept_unnamed_server`` says; editing one file reloads that one only; other spellings
of a governed server (``127.1``, ``localhost``, a query, a dot segment) are still governed or
refused, never judged as an unnamed server.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx2
import mcp
import pytest

from harness import ran, start_mcp_server, start_mitmdump
from raw_mcp import ACCEPT, call, messages
from test_addon_e2e import call_denied, client

pytestmark = pytest.mark.e2e


def policy_a(port: int, extra: str = "") -> str:
    return (f'servers: ["http://127.0.0.1:{port}/mcp*"]\nhide: [secret_admin]\ntools:\n'
            '  delete_everything:\n    rules:\n      - {action: deny, reason: "A keeps its data"}\n'
            "  generate:\n    rules:\n      - action: allow\n        rate_limit: {max: 2, window: 60}\n" + extra)


def policy_b(port: int, denied: str = "echo") -> str:
    return (f'servers: ["http://127.0.0.1:{port}/*"]\ntools:\n'
            f'  {denied}:\n    rules:\n      - {{action: deny, reason: "B refuses {denied}"}}\n')


class Stack:
    def __init__(self, tmp: Path, *options: str, fallback: str | None = None) -> None:
        self.tmp = tmp
        self.procs = []
        self.ports, self.sides = {}, {}
        for name in "ABC":
            proc, self.ports[name], self.sides[name] = start_mcp_server(tmp)
            self.procs.append(proc)
        self.policies = tmp / "policies"
        self.policies.mkdir()
        (self.policies / "a.yaml").write_text(policy_a(self.ports["A"]))
        (self.policies / "b.yaml").write_text(policy_b(self.ports["B"]))
        if fallback is not None:
            (self.policies / "default.yaml").write_text(fallback)
        proxy, self.proxy_port = start_mitmdump(tmp, None, "intercept_state=memory", *options,
                                                policy=self.policies, mode="regular")
        self.procs.append(proxy)
        self.proxy = f"http://127.0.0.1:{self.proxy_port}"

    def url(self, name: str, host: str = "127.0.0.1", path: str = "/mcp") -> str:
        return f"http://{host}:{self.ports[name]}{path}"

    def client(self, name: str, agent: str = "a1", **where: str):
        return client(self.url(name, **where), "auto", agent=agent, proxy=self.proxy)

    async def decisions(self) -> list[dict]:
        await asyncio.sleep(1.5)  # the decision log reaches the file within FLUSH_SECONDS
        log = self.tmp / "mitmproxy" / "intercept-decisions.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def proxy_log(self) -> str:
        return (self.tmp / f"mitmdump-{self.proxy_port}.log").read_text()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def stacks(tmp_path: Path):
    made: list[Stack] = []

    def make(*options: str, fallback: str | None = None, sub: str = "s") -> Stack:
        where = tmp_path / f"{sub}{len(made)}"
        where.mkdir()
        made.append(Stack(where, *options, fallback=fallback))
        return made[-1]

    yield make
    for stack in made:
        stack.stop()


async def test_each_server_has_its_own_policy_counters_and_hidden_tools(stacks):
    s = stacks()
    async with s.client("A") as a, s.client("B") as b, s.client("C") as c:
        assert "A keeps its data" in str(await call_denied(a, "delete_everything", {}))
        assert (await b.call_tool("delete_everything", {})).content[0].text  # B's policy allows it
        for i in range(2):
            await a.call_tool("generate", {"prompt": f"a{i}"})
        for i in range(3):  # the same agent, the same tool name: B's calls are not A's
            await b.call_tool("generate", {"prompt": f"b{i}"})
        assert "rate" in str(await call_denied(a, "generate", {"prompt": "a3"})).lower()
        assert "B refuses echo" in str(await call_denied(b, "echo", {"text": "x"}))
        assert (await a.call_tool("echo", {"text": "x"})).content[0].text == "x"
        assert "secret_admin" not in {t.name for t in (await a.list_tools()).tools}
        assert "secret_admin" in {t.name for t in (await b.list_tools()).tools}
        await c.call_tool("delete_everything", {})  # unnamed: inspected, nothing blocked
        await c.call_tool("echo", {"text": "y"})
    assert ran(s.sides["A"]) == ["generate", "generate", "echo"]
    assert ran(s.sides["B"]) == ["delete_everything", "generate", "generate", "generate"]
    assert ran(s.sides["C"]) == ["delete_everything", "echo"]
    by_server = {(d["server"], d["tool"], d["decision"]) for d in await s.decisions()}
    a_name, b_name = f"http://127.0.0.1:{s.ports['A']}/mcp*", f"http://127.0.0.1:{s.ports['B']}/*"
    assert (a_name, "delete_everything", "deny") in by_server and (b_name, "echo", "deny") in by_server
    assert (b_name, "delete_everything", "allow") in by_server
    warned = f"server \"http://127.0.0.1:{s.ports['C']}\" is named by no policy: inspect only"
    assert s.proxy_log().count(warned) == 1  # one warning per new server, not per call


async def test_an_unnamed_server_is_denied_or_gets_the_fallback_as_the_option_says(stacks):
    denying = stacks("intercept_unnamed_server=deny")
    async with httpx2.AsyncClient(proxy=denying.proxy, trust_env=False, timeout=10) as http:
        resp = await http.post(denying.url("C"), json=call(1, "echo", {"text": "x"}),
                               headers={"accept": ACCEPT})
    assert resp.status_code == 403 and "named by no policy" in messages(resp)[0]["error"]["message"]
    assert ran(denying.sides["C"]) == []
    async with denying.client("A") as a:  # named servers are unaffected
        await a.call_tool("echo", {"text": "x"})

    # The fallback answers its denials as tool results (deny_as: result); A keeps JSON-RPC errors.
    fallback = 'deny_as: result\ntools:\n  echo:\n    rules:\n      - {action: deny, reason: "fallback says no"}\n'
    falling = stacks("intercept_unnamed_server=fallback", fallback=fallback)
    async with falling.client("C") as c, falling.client("A") as a:
        denied = await c.call_tool("echo", {"text": "x"})
        assert denied.is_error and "fallback says no" in denied.content[0].text
        await c.call_tool("delete_everything", {})
        await a.call_tool("echo", {"text": "x"})  # A has its own policy: the fallback is not its
        assert "A keeps its data" in str(await call_denied(a, "delete_everything", {}))
    assert ran(falling.sides["C"]) == ["delete_everything"]


async def test_editing_one_file_reloads_that_one_only(stacks):
    s = stacks()
    b_file, a_file = s.policies / "b.yaml", s.policies / "a.yaml"
    async with s.client("B") as b:  # the proxy has read the policies (its port opens before that)
        assert "B refuses echo" in str(await call_denied(b, "echo", {"text": "x"}))
    b_file.write_text("servers: [this is not a pattern]\ntools: {}\n")  # a bad edit of B
    a_file.write_text(policy_a(s.ports["A"], '  echo:\n    rules:\n      - {action: deny, reason: "A now refuses echo"}\n'))
    async with s.client("A") as a, s.client("B") as b:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # A's edit applies within a few poll periods
            try:
                await a.call_tool("echo", {"text": "x"})
            except mcp.MCPError as err:
                assert "A now refuses echo" in str(err)
                break
            await asyncio.sleep(0.3)
        else:
            pytest.fail("the edit of a.yaml never applied")
        assert "B refuses echo" in str(await call_denied(b, "echo", {"text": "x"}))  # B's old policy stays
        assert "A keeps its data" in str(await call_denied(a, "delete_everything", {}))
        # An edit that makes B name A's server too is refused as a whole; B keeps its policy.
        b_file.write_text(policy_b(s.ports["B"], denied="generate").replace(
            "servers: [", f'servers: ["http://127.0.0.1:{s.ports["A"]}/mcp*", '))
        await asyncio.sleep(3)
        assert "B refuses echo" in str(await call_denied(b, "echo", {"text": "x"}))
        b_file.write_text(policy_b(s.ports["B"], denied="generate"))  # fixed: now applied
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                await b.call_tool("generate", {"prompt": "p"})
            except mcp.MCPError as err:
                assert "B refuses generate" in str(err)
                break
            await asyncio.sleep(0.3)
        else:
            pytest.fail("the fixed b.yaml never applied")
        assert (await b.call_tool("echo", {"text": "x"})).content[0].text == "x"
    log = s.proxy_log()
    assert "b.yaml" in log and "NOT reloaded" in log and "named by two policies" in log


async def test_other_spellings_of_a_governed_server_are_still_governed(stacks):
    s = stacks()
    async with httpx2.AsyncClient(proxy=s.proxy, trust_env=False, timeout=10) as http:
        for host in ("127.1", "localhost", "2130706433", "0x7f.0.0.1", "127.0.0.1."):
            resp = await http.post(s.url("A", host=host), json=call(1, "delete_everything", {}),
                                   headers={"accept": ACCEPT, "x-agent-id": "spelled"})
            assert "A keeps its data" in messages(resp)[0]["error"]["message"], host
    async with s.client("A", agent="q") as plain, s.client("A", agent="q", path="/mcp?fresh=1") as query:
        await plain.call_tool("generate", {"prompt": "1"})
        await query.call_tool("generate", {"prompt": "2"})
        assert "rate" in str(await call_denied(query, "generate", {"prompt": "3"})).lower()  # one server, one count
    for path in ("/x/../mcp", "/%6dcp", "//mcp", "/mcp/%2e%2e/mcp"):  # as sent: no client library normalises them here
        assert (await raw_status(s.proxy_port, s.url("A", path=path))) == 400, path
    assert "delete_everything" not in ran(s.sides["A"])


async def raw_status(proxy_port: int, url: str) -> int:
    """POST a denied call to ``url`` through the proxy with the request target exactly as given."""
    body = json.dumps(call(1, "delete_everything", {})).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    host = url.split("/")[2]
    writer.write(f"POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Accept: {ACCEPT}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(status.split()[1])
