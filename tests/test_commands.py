"""``intercept.status``, ``intercept.reset``, ``intercept.reload`` run through mitmproxy's command
manager (as the console prompt and mitmweb run them) on the root script's addons, with real
decisions and a real counter store. mitmweb's own command API is exercised in
test_mitmweb_browser.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import weakref
from pathlib import Path

import pytest
from mitmproxy import exceptions

from addon_context import proxy_context


@pytest.fixture(params=["memory", "sqlite"])
def proxy(request: pytest.FixtureRequest, tmp_path: Path, policy_file: Path):
    state = "memory" if request.param == "memory" else f"sqlite://{tmp_path / 'state.sqlite'}"
    with proxy_context(tmp_path / "conf", policy_file, intercept_state=state) as p:
        yield p


def table(lines: list[str], title: str) -> list[list[str]]:
    """The rows of the table under ``title`` (split on runs of spaces), header and rule excluded."""
    start = lines.index(title) + 3
    rows = []
    for line in lines[start:]:
        if line.endswith(":"):
            break
        rows.append(line.split())
    return rows


def removed(answer: str, what: str) -> int:
    """The number of store entries a reset reports (rows or keys: each store counts its own)."""
    match = re.fullmatch(rf"reset {re.escape(what)}: (\d+) entries removed", answer)
    assert match, answer
    return int(match.group(1))


async def test_status_shows_decisions_per_rule_and_counters_per_session(proxy):
    for _ in range(4):
        await proxy.call("generate", {"prompt": "p"}, agent="a1")
    await proxy.call("generate", {"prompt": "p"}, agent="a2")
    await proxy.call("delete_everything", {})
    lines = proxy.command("intercept.status")
    assert lines[0].startswith(f"policy: {proxy.tctx.options.intercept_policy}  mode: enforce")
    assert lines[1] == "decisions since start: 6 (allow 4, deny 2)"
    assert lines[2].split() == ["rule", "allow", "deny"]
    assert [r.split() for r in lines[4:7]] == [["-", "4", "0"], ["generate", "limit", "0", "1"],
                                               ["no", "deletes", "0", "1"]]
    assert table(lines, "counters (current window):") == [
        ["generate", "_rate_60s", "agent-header:a1", "3", "3", "calls", "per", "60", "s"],
        ["generate", "_rate_60s", "agent-header:a2", "1", "3", "calls", "per", "60", "s"]]


async def test_reset_one_counter_lets_the_session_call_again(proxy):
    for _ in range(3):
        await proxy.call("generate", {"prompt": "p"})
    assert (await proxy.call("generate", {"prompt": "p"})).metadata["mcp.decision"] == "deny"
    assert removed(proxy.command("intercept.reset", "generate", "_rate_60s"), "counter _rate_60s of generate") > 0
    assert (await proxy.call("generate", {"prompt": "p"})).metadata["mcp.decision"] == "allow"
    assert table(proxy.command("intercept.status"), "counters (current window):")[0][3] == "1"


async def test_reset_is_by_whole_names(proxy):
    await proxy.call("generate", {"prompt": "p"})
    assert removed(proxy.command("intercept.reset", "gen"), "the counters of gen") == 0
    assert removed(proxy.command("intercept.reset", "generate"), "the counters of generate") > 0
    await proxy.call("generate", {"prompt": "p"})
    assert removed(proxy.command("intercept.reset", "*"), "every counter") > 0
    assert proxy.command("intercept.status")[-1] == "counters: none in their current window"


async def test_reload(proxy, policy_file: Path, caplog: pytest.LogCaptureFixture):
    assert proxy.command("intercept.reload") == f"policy {policy_file} reloaded"
    policy_file.write_text(policy_file.read_text().replace("action: deny", "action: allow"))  # allow needs no on_deny
    assert (await proxy.call("delete_everything", {})).metadata["mcp.decision"] == "deny"
    policy_file.write_text("version: 1\ntools: {x: {rules: [{action: nonsense}]}}\n")
    with caplog.at_level(logging.ERROR), pytest.raises(exceptions.CommandError, match="NOT reloaded"):
        proxy.command("intercept.reload")
    assert "previous policy stays in force" in caplog.text
    assert (await proxy.call("delete_everything", {})).metadata["mcp.decision"] == "deny"  # still in force


async def test_commands_from_the_command_line_parser(proxy):
    """The console prompt parses a typed line: quoting and the optional counter argument."""
    await proxy.call("generate", {"prompt": "p"})
    assert removed(proxy.tctx.master.commands.execute('intercept.reset "generate"'), "the counters of generate") > 0
    assert proxy.tctx.master.commands.execute("intercept.status")[1] == "decisions since start: 1 (allow 1, deny 0)"


async def test_status_with_a_store_that_answers_later(tmp_path: Path, policy_file: Path, redis_server,
                                                      caplog: pytest.LogCaptureFixture):
    """A network store suspends: the command returns at once and the counters reach the event log."""
    with proxy_context(tmp_path / "conf", policy_file, intercept_state=redis_server.url,
                       intercept_state_prefix="commands-test:") as proxy:
        await proxy.call("generate", {"prompt": "p"})
        with caplog.at_level(logging.INFO, logger="intercept"):
            lines = proxy.command("intercept.status")
            assert lines[-1] == "counters: waiting for the counter store; the answer goes to the event log"
            for _ in range(100):
                if "intercept: counters:" in caplog.text:
                    break
                await asyncio.sleep(0.02)
        assert "generate  _rate_60s  agent-header:a1  1" in caplog.text


async def test_a_waiting_store_call_is_kept_until_it_answers(tmp_path: Path, policy_file: Path,
                                                              caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch):
    """asyncio holds tasks weakly: a command's store call waiting on a future that nothing else
    references must survive a garbage collection and still log its answer."""
    waiting: list[weakref.ref[asyncio.Future[int]]] = []

    class WaitingStore:
        async def reset(self, key_prefix: str) -> int:
            answer = asyncio.get_running_loop().create_future()
            waiting.append(weakref.ref(answer))
            return await answer

    with proxy_context(tmp_path / "conf", policy_file) as proxy, caplog.at_level(logging.INFO, logger="intercept"):
        store = WaitingStore()
        monkeypatch.setattr(type(proxy.intercept), "store", property(lambda self: store), raising=False)
        assert proxy.command("intercept.reset", "*").endswith("waiting for the counter store; "
                                                              "the answer goes to the event log")
        gc.collect()
        answer = waiting[0]()
        assert answer is not None, "the pending store call was garbage-collected"
        answer.set_result(7)
        del answer
        for _ in range(10):
            await asyncio.sleep(0)
        assert "reset every counter: 7 entries removed" in caplog.text
        assert not proxy.commands._pending
