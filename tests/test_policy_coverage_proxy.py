"""The proxy's coverage report (proxy/coverage.py via ToolLists.judge): one warning per
finding for the first complete tools/list of each server, the report on the flow and in
``intercept.status``, compared again when the policy changes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mitmproxy.test import tflow, tutils

from addon_context import proxy_context
from intercept_addon.policy.file import parse_policy
from intercept_addon.proxy import coverage
from intercept_addon.proxy.toollists import ToolLists

ROOT = Path(__file__).resolve().parents[1]
SORA_TOOLS = json.loads((ROOT / "tests" / "fixtures" / "mcp_sora_tools.json").read_text())
CATALOGUE = "tools:\n  Image-to-Video:\n    rules:\n      - action: allow\n        rate_limit: {max: 30, window: 60}\n"
WARNING = ('intercept: policy key "Image-to-Video" matches no tool of http://127.0.0.1:8000; '
           "closest: sora_generate_video_from_image, sora_generate_video")


def engine(text: str) -> dict:
    """The policies ToolLists.use takes: one file, naming no servers."""
    return {"<test>": parse_policy(text, "<test>")}


def answer(tools: list, cursor: str | None = None) -> dict:
    result: dict = {"tools": [dict(t) for t in tools]}
    if cursor is not None:
        result["nextCursor"] = cursor
    return {"jsonrpc": "2.0", "id": 1, "result": result}


def flow(port: int = 8000) -> tflow.HTTPFlow:
    return tflow.tflow(req=tutils.treq(host="127.0.0.1", port=port, path=b"/mcp", method=b"POST"))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    caplog.clear()
    return lines


def test_first_list_of_a_server_warns_once_per_unmatched_key(caplog):
    lists = ToolLists()
    lists.use(engine(CATALOGUE))
    first = flow()
    lists.judge(first, answer(SORA_TOOLS))
    assert warnings(caplog) == [WARNING]
    assert first.metadata["mcp.unmatched"] == [WARNING.removeprefix("intercept: ")]
    assert first.comment == 'POLICY KEYS MATCH NO TOOL: "Image-to-Video"' and not first.marked  # marks are for denials

    again = flow()
    lists.judge(again, answer(SORA_TOOLS))
    assert warnings(caplog) == []  # not compared again
    assert again.metadata["mcp.unmatched"] == first.metadata["mcp.unmatched"]  # still noted
    lists.judge(flow(port=9000), answer(SORA_TOOLS))
    assert warnings(caplog) == [WARNING.replace(":8000", ":9000")]  # another server


def test_pages_are_gathered_until_the_last(caplog):
    lists = ToolLists()
    lists.use(engine("tools:\n  sora_get_task: {}\n  sora_list_models: {}\n"))
    by_name = {t["name"]: t for t in SORA_TOOLS}
    lists.judge(flow(), answer([by_name["sora_get_task"]], cursor="2"))
    assert warnings(caplog) == []  # sora_list_models may be on the next page
    lists.judge(flow(), answer([by_name["sora_generate_video"]]))
    assert warnings(caplog) == [
        'intercept: policy key "sora_list_models" matches no tool of http://127.0.0.1:8000; '
        "closest: sora_get_task, sora_generate_video"]


def test_hidden_tools_count_as_matched_and_are_still_hidden(caplog):
    lists = ToolLists()
    lists.use(engine((ROOT / "policies" / "mcp-sora.yaml").read_text()))
    msg = answer(SORA_TOOLS)
    assert lists.judge(flow(), msg)
    assert len(msg["result"]["tools"]) == 8
    assert warnings(caplog) == []


def test_a_policy_change_compares_every_known_server_again(caplog):
    lists = ToolLists()
    lists.use(engine(CATALOGUE))
    lists.judge(flow(), answer(SORA_TOOLS))
    assert warnings(caplog) == [WARNING]
    lists.use(engine(CATALOGUE))  # the same policy, reloaded
    assert warnings(caplog) == []
    lists.use(engine(CATALOGUE.replace("Image-to-Video", "sora_generate_video_from_image")))
    assert warnings(caplog) == []
    assert lists.coverage.status() == [
        "policy coverage (first tools/list of each server):",
        "  http://127.0.0.1:8000: every policy key and argument matches (10 tools)"]
    lists.use(engine(CATALOGUE.replace("Image-to-Video", "sora_generate_videos")))
    assert warnings(caplog) == ['intercept: policy key "sora_generate_videos" matches no tool of '
                                "http://127.0.0.1:8000; closest: sora_generate_video, sora_generate_video_async, "
                                "sora_generate_video_v2"]
    lists.use(None)
    lists.judge(flow(port=9000), answer(SORA_TOOLS))
    assert lists.coverage.status() == ["policy coverage: no complete tools/list seen yet"]


def test_servers_and_tools_remembered_are_bounded(caplog):
    lists = ToolLists()
    lists.use(engine(CATALOGUE))
    for port in range(1, coverage.MAX_SERVERS + 11):
        lists.judge(flow(port), answer(SORA_TOOLS[:1]))
    assert len(lists.coverage.servers) == coverage.MAX_SERVERS
    many = [{"name": f"t{i}"} for i in range(coverage.MAX_TOOLS + 500)]
    lists.judge(flow(50_000), answer(many, cursor="never ends"))
    assert len(lists.coverage.servers["http://127.0.0.1:50000"].tools) == coverage.MAX_TOOLS


async def test_status_command_shows_the_report(tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(CATALOGUE)
    with proxy_context(tmp_path / "conf", policy) as proxy:
        assert "policy coverage: no complete tools/list seen yet" in proxy.command("intercept.status")
        proxy.intercept.toollists.judge(flow(), answer(SORA_TOOLS))
        lines = proxy.command("intercept.status")
    start = lines.index("policy coverage (first tools/list of each server):")
    assert lines[start + 1] == "  " + WARNING.removeprefix("intercept: ")
