"""Agent-controlled text escaped wherever it is printed: ``wire.text`` itself, the JSON-RPC
errors that quote wire values, and the ``status`` CLI (a subprocess) reading a decision log
written by the real DecisionLog or by hand (old lines are not trusted either)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from addon_context import proxy_context
from harness import ROOT, clean_env
from intercept_addon.proxy.table import format_table
from intercept_addon.wire import jsonrpc, mcp
from intercept_addon.wire.jsonrpc import ProtocolError
from intercept_addon.wire.text import escaped, shown

# A newline and a carriage return to forge lines, an ANSI colour, a right-to-left override,
# a line separator, a bidi isolate, DEL and a C1 control (CSI, an escape on some terminals).
HOSTILE = "x\n2026-01-01 allow forged\r\x1b[31mred\u202egnp.exe\u2028\u2066\x7f\x9b"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_shown_is_a_json_literal_with_every_control_escaped():
    assert shown('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert shown(HOSTILE) == ('"x\\n2026-01-01 allow forged\\r\\u001b[31mred\\u202egnp.exe\\u2028\\u2066'
                              '\\u007f\\u009b"')
    assert shown("héllo 日本") == '"héllo 日本"'  # printable text stays readable
    assert shown("\U000e0001") == '"\\udb40\\udc01"'  # a format character beyond the BMP: a JSON pair


def test_shown_cuts_long_values_with_a_marker():
    assert shown("a" * 130, limit=100) == '"' + "a" * 100 + '"... (30 more characters)'
    assert shown("a" * 100, limit=100) == '"' + "a" * 100 + '"'


@given(st.text())
def test_shown_round_trips_through_json_and_prints_on_one_line(value: str):
    text = shown(value, limit=len(value))
    assert json.loads(text) == value
    assert text.isprintable()


@given(st.text())
def test_escaped_is_printable(value: str):
    assert escaped(value).isprintable()


def test_table_cells_cannot_add_lines():
    lines = format_table(["session", "tool"], [(HOSTILE, "t\tab")])
    assert len(lines) == 3 and not any(UNSAFE.search(line) for line in lines)
    assert lines[2].startswith("x\\n2026-01-01 allow forged\\r\\u001b[31m")


@pytest.mark.parametrize("twin, problem", [(HOSTILE, "duplicate key"), (HOSTILE.upper(), "ambiguous key")])
def test_a_hostile_key_in_a_parse_error(twin: str, problem: str):
    body = f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{{hostile_json()}:1,{json.dumps(twin)}:2}}}}'
    with pytest.raises(ProtocolError) as info:
        jsonrpc.loads(body.encode())
    assert info.value.message.startswith(f"{problem} {shown(twin)}")
    assert info.value.message.isprintable() and not UNSAFE.search(info.value.message)


def hostile_json() -> str:
    """HOSTILE as a JSON string literal, the way a client would put it in a body."""
    return json.dumps(HOSTILE)


def test_a_hostile_member_name_in_an_invalid_request():
    with pytest.raises(ProtocolError) as info:
        jsonrpc.classify(jsonrpc.loads(f'{{"jsonrpc":"2.0","id":1,"method":"ping",{hostile_json()}:1}}'.encode()))
    assert info.value.message == f"unknown member {shown(HOSTILE)} in a JSON-RPC message"
    assert not UNSAFE.search(info.value.message)


def test_a_hostile_tool_name():
    message = jsonrpc.classify({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": HOSTILE}})
    with pytest.raises(ProtocolError) as info:
        mcp.tool_call(message, re.compile(mcp.DEFAULT_TOOL_NAME))
    assert info.value.message.startswith(f"tool name {shown(HOSTILE)} has characters outside ")


def test_a_hostile_method_variant():
    """Whitespace around a guarded method (a lenient server strips it) includes line breaks."""
    message = jsonrpc.classify({"jsonrpc": "2.0", "id": 1, "method": "\x1f\u2028Tools/Call\n\r\x85"})
    with pytest.raises(ProtocolError) as info:
        mcp.check_method(message)
    assert info.value.message == 'ambiguous method "\\u001f\\u2028Tools/Call\\n\\r\\u0085"'


def status(log: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "intercept_addon", "status", str(log)], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_safe(output: str, lines: int) -> None:
    assert len(output.splitlines()) == lines, output
    assert not UNSAFE.search(output), output


async def test_status_of_a_log_written_by_the_proxy(tmp_path: Path, policy_file: Path):
    """A duplicate key and an unknown member named with HOSTILE, from an agent whose x-agent-id
    is hostile too: each refusal is one row of the report, with nothing unescaped."""
    with proxy_context(tmp_path / "conf", policy_file) as proxy:
        key = hostile_json()
        for body in (f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{{key}:1,{key}:2}}}}',
                     f'{{"jsonrpc":"2.0","id":2,"method":"tools/call",{key}:1}}'):
            flow = await proxy.send(body.encode())
            assert flow.metadata["mcp.decision"] == "refused"
            assert flow.comment.isprintable()
        await proxy.call("delete_everything", {}, agent="a1\x1b[2J\u202e")
        log = proxy.log.path
    output = status(log)
    # header (3), blank, title, table head (2) + 2 rows, blank, title, table head (2) + 3 rows
    assert_safe(output, 16)
    assert output.count(shown(HOSTILE)) == 2  # both messages name the key, escaped
    assert "a1\\u001b[2J\\u202e" in output  # the session


def test_status_of_hand_written_old_lines(tmp_path: Path):
    """Lines the proxy never wrote (an old version, an edit): every field is escaped on output."""
    log = tmp_path / "decisions.jsonl"
    entry = {"time": HOSTILE, "session": HOSTILE, "tool": HOSTILE, "decision": "deny", "kind": "deny",
             "rule": HOSTILE, "message": HOSTILE, "blocked": True}
    log.write_text(json.dumps(entry, ensure_ascii=False) + "\n" + json.dumps(entry) + "\n")
    # header (3), blank, title, table head (2) + 1 row, blank, title, table head (2) + 2 rows
    assert_safe(status(log), 14)
