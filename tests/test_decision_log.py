"""The decision log: real decisions of the InterceptAddon (the root script's addons in
mitmproxy's test context) written by the DecisionLog addon; redaction, hashing, rotation; and
the ``status`` CLI reading it back."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from mitmproxy import exceptions

from addon_context import proxy_context
from harness import ROOT, clean_env
from intercept_addon.proxy.decision_log import FILE_NAME
from intercept_addon.proxy.decision_summary import summarize


@pytest.fixture
def proxy(tmp_path: Path, policy_file: Path):
    with proxy_context(tmp_path / "conf", policy_file) as p:
        yield p


def digest(arguments: dict) -> str:
    """What the log promises: sha256 of the arguments as compact JSON with sorted keys."""
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


async def test_one_line_per_decision(proxy):
    assert proxy.log.path == Path(proxy.tctx.options.confdir) / FILE_NAME  # "on": in the confdir
    await proxy.call("echo", {"text": "héllo", "a": [1, 2]})
    await proxy.call("delete_everything", {})
    for i in range(4):
        await proxy.call("generate", {"prompt": f"p{i}"})
    allowed, deleted, *generated = proxy.log_lines()
    assert allowed.keys() == {"time", "instance", "flow", "agent", "user", "process", "session", "server", "tool", "decision",
                              "kind", "rule", "message", "retry_after", "blocked", "args_sha256"}
    assert datetime.fromisoformat(allowed["time"]).utcoffset().total_seconds() == 0
    assert allowed["instance"] == f"{socket.gethostname()}:{os.getpid()}"
    assert allowed | {"time": None, "instance": None, "flow": None} == {
        "time": None, "instance": None, "flow": None, "agent": "agent-header:a1", "user": None, "process": None,
        "session": None, "server": None, "tool": "echo",
        "decision": "allow", "kind": "allow", "rule": None, "message": None, "retry_after": None, "blocked": False,
        "args_sha256": digest({"text": "héllo", "a": [1, 2]})}
    assert deleted["decision"] == "deny" and deleted["kind"] == "deny" and deleted["rule"] == "no deletes"
    assert deleted["message"] == "Deleting everything is not allowed" and deleted["blocked"] is True
    assert [g["decision"] for g in generated] == ["allow", "allow", "allow", "deny"]
    assert generated[3]["kind"] == "rate_limit" and 0 < generated[3]["retry_after"] <= 60


async def test_monitor_mode_logs_denials_as_not_blocked(proxy):
    proxy.tctx.configure(proxy.intercept, intercept_mode="monitor")
    flow = await proxy.call("delete_everything", {})
    assert flow.response is None  # forwarded
    [entry] = proxy.log_lines()
    assert entry["decision"] == "deny" and entry["blocked"] is False


async def test_refused_requests_are_logged(proxy):
    flow = await proxy.send(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"x"}}')
    assert flow.response is not None and flow.response.status_code == 400
    [entry] = proxy.log_lines()
    assert entry["decision"] == "refused" and entry["kind"] == "protocol" and entry["blocked"] is True
    assert "duplicate" in entry["message"] and entry["agent"] is None and "args_sha256" not in entry


async def test_arguments_only_when_asked_and_redacted_at_any_depth(proxy):
    arguments = {"amount": 5, "API_Key": "k-secret", "auth": {"Password": "p-secret",
                                                            "hops": [{"token": "t-secret", "keep": 1}]}}
    redacted = {"amount": 5, "API_Key": "[REDACTED]", "auth": {"Password": "[REDACTED]",
                                                              "hops": [{"token": "[REDACTED]", "keep": 1}]}}
    await proxy.call("charge", arguments)
    proxy.tctx.configure(proxy.log, intercept_log_args=True)
    await proxy.call("charge", arguments)
    first, second = proxy.log_lines()
    assert "arguments" not in first and second["arguments"] == redacted
    # The hash is of the redacted arguments: a secret cannot even be checked against guesses.
    assert first["args_sha256"] == second["args_sha256"] == digest(redacted)
    assert "secret" not in proxy.log.path.read_text()


async def test_redacted_keys_are_configurable(proxy):
    proxy.tctx.configure(proxy.log, intercept_log_args=True, intercept_log_redact="currency, AMOUNT")
    await proxy.call("charge", {"amount": 5, "currency": "eur", "password": "visible"})
    [entry] = proxy.log_lines()
    assert entry["arguments"] == {"amount": "[REDACTED]", "currency": "[REDACTED]", "password": "visible"}


async def test_hash_is_canonical(proxy):
    await proxy.send(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":'
                     b'{"b": {"y": 1.50, "x": 2}, "a": "z"}}}')
    await proxy.send(b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":'
                     b'{"a": "z", "b": {"x": 2, "y": 1.50}}}}')
    await proxy.call("echo", {"a": "z", "b": {"x": 2, "y": 1.51}})
    one, same, other = proxy.log_lines()
    assert one["args_sha256"] == same["args_sha256"] != other["args_sha256"]
    # Exact numbers: 1.50 is hashed as written, not as the float 1.5.
    assert one["args_sha256"] == hashlib.sha256(b'{"a":"z","b":{"x":2,"y":1.50}}').hexdigest()


async def test_rotation_by_size_keeps_n_files(proxy, tmp_path: Path):
    path = tmp_path / "audit" / "decisions.jsonl"
    proxy.tctx.configure(proxy.log, intercept_log=str(path), intercept_log_max_bytes=2000, intercept_log_keep=2)
    flows = [await proxy.call("echo", {"text": f"call {i}"}, agent=f"agent-{i}") for i in range(30)]
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2"]
    for name in files:
        assert 0 < (path.parent / name).stat().st_size <= 2000
    summary = summarize(path)
    assert summary.files == [path.parent / "decisions.jsonl.2", path.parent / "decisions.jsonl.1", path]
    kept = [json.loads(line) for f in summary.files for line in f.read_text().splitlines()]
    # The oldest lines were dropped; what is kept is the newest, in order, none torn.
    assert 8 <= len(kept) < 30 and summary.entries == len(kept) and summary.skipped == 0
    assert [e["flow"] for e in kept] == [f.id for f in flows[-len(kept):]]


async def test_off_writes_nothing(proxy):
    default = proxy.log.path
    proxy.tctx.configure(proxy.log, intercept_log="off")
    await proxy.call("echo", {"text": "x"})
    assert proxy.log.path is None and default.read_text() == ""


@pytest.mark.parametrize("option, value", [("intercept_log_keep", 0), ("intercept_log_max_bytes", -1),
                                           ("intercept_log", "/proc/no/such/dir/log.jsonl")])
def test_bad_options_stop_the_proxy(proxy, option, value):
    with pytest.raises(exceptions.OptionsError, match=option):
        proxy.tctx.configure(proxy.log, **{option: value})


async def test_a_refused_new_log_path_keeps_the_old_log(proxy):
    before = proxy.log.path
    with pytest.raises(exceptions.OptionsError):
        proxy.tctx.configure(proxy.log, intercept_log="/proc/no/such/dir/log.jsonl")
    await proxy.call("echo", {"text": "still audited"})
    assert proxy.log.path == before and proxy.log_lines()[-1]["tool"] == "echo"


# -- python -m intercept_addon status ----------------------------------------------------------


def status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "intercept_addon", "status", *args], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


async def test_status_cli_summarises_the_log(proxy):
    await proxy.call("echo", {"text": "x"})
    await proxy.call("delete_everything", {}, agent="a2")
    await proxy.call("charge", {"amount": 900})
    await proxy.call("delete_everything", {}, agent="a3")
    await proxy.send(b"{not json")
    with proxy.log.path.open("a") as f:
        f.write('{"half a line\n')
    out = status(str(proxy.log.path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "decisions: 5  allowed 1  denied 3  refused 1  deny rate 80.0%" in lines
    assert "skipped 1 unreadable lines" in lines
    top = lines[lines.index("top rules (denials and refusals):") + 1:]
    assert top[0].split() == ["count", "rule", "tool"]
    assert top[2].split() == ["2", "no", "deletes", "delete_everything"]
    assert {tuple(row.split()) for row in top[3:5]} == {("1", "max", "charge", "charge"),
                                                        ("1", "(protocol)", "-")}
    recent = lines[lines.index("recent denials (last 4):") + 1:]
    assert recent[0].split() == ["time", "agent", "tool", "decision", "rule", "message"]
    assert "agent-header:a2" in recent[2] and "Deleting everything is not allowed" in recent[2]
    assert "Charges above 500 are not allowed" in recent[3] and "refused" in recent[5]

    only_last = status(str(proxy.log.path), "--recent", "1").stdout.splitlines()
    assert "recent denials (last 1):" in only_last and "refused" in only_last[-1]


def test_status_cli_without_a_log(tmp_path: Path):
    out = status(str(tmp_path / "missing.jsonl"))
    assert out.returncode == 1 and out.stdout.strip() == "no decision log found"


async def test_lines_are_buffered_and_all_kept_at_shutdown(proxy):
    """record() only buffers (no write and flush per decision); done() writes the rest."""
    flow = await proxy.call("echo", {"text": "x"})
    path = proxy.log.path
    for _ in range(500):
        proxy.log.record(flow, None, None)
    proxy.log.done()
    lines = path.read_text().splitlines()
    assert len(lines) == 501 and all(json.loads(line)["flow"] == flow.id for line in lines)
