"""The decision log: one JSON line per decision, an audit trail that outlives the proxy.

A small addon with its own options. The InterceptAddon calls :meth:`DecisionLog.record` from
the one place it records a decision (its ``decision_hooks``). A line looks like::

    {"time": "2026-05-01T12:00:00.123+00:00", "instance": "host:4242", "flow": "…",
     "agent": "process:4321@1764628800123", "user": null, "process": "python3 (pid 4321)",
     "session": null, "server": null, "tool": "charge", "decision": "deny", "kind": "condition",
     "rule": "max charge", "message": "…", "retry_after": null, "blocked": true,
     "args_sha256": "…"}

``args_sha256`` hashes the canonical JSON of the arguments (keys sorted, compact, exact
numbers) *after* redaction, so secrets never reach the log in any form, not even as a hash
that could be checked against guesses; ``arguments`` (the redacted arguments) is present only
with ``intercept_log_args``. Requests refused as malformed get ``"decision": "refused"``.

The summary behind ``python -m intercept_addon status`` reads it back (decision_summary.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mitmproxy import ctx, exceptions, http

from intercept_addon.policy.engine import Decision
from intercept_addon.wire import jsonrpc

if TYPE_CHECKING:
    from intercept_addon.proxy.addon import InterceptAddon

log = logging.getLogger("intercept")

FILE_NAME = "intercept-decisions.jsonl"
FLUSH_SECONDS = 0.2  # the longest a decision waits in the buffer before it reaches the OS
DEFAULT_REDACT = "password,passwd,secret,token,api_key,apikey,authorization,cookie"
REDACTED = "[REDACTED]"


class _LogFile:
    """The log file, appended to in a 64 KiB buffer that reaches the OS within FLUSH_SECONDS
    (and at every rotation and on close): one memory copy per decision on the event loop, not a
    write and a flush. Rotates by size as logging's RotatingFileHandler does: FILE -> FILE.1 ->
    … -> FILE.N, the oldest dropped."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._file = open(path, "ab", buffering=64 * 1024)  # raises OSError here, if it cannot
        self._size = self._file.tell()
        self._flush_due: asyncio.TimerHandle | None = None

    def write(self, line: bytes) -> None:
        if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._file.write(line)
        self._size += len(line)
        if self._flush_due is None:
            try:
                self._flush_due = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no event loop: write through
                self.flush()

    def flush(self) -> None:
        self._flush_due = None
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab", buffering=64 * 1024)
        self._size = 0

    def close(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
        self._file.close()


def redact(value: Any, keys: frozenset[str]) -> Any:
    """A copy of ``value`` with the values of ``keys`` (case-insensitive) replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: REDACTED if k.lower() in keys else redact(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, keys) for v in value]
    return value


def args_digest(arguments: Mapping[str, Any]) -> str:
    return hashlib.sha256(jsonrpc.dumps(arguments, sort_keys=True)).hexdigest()


class DecisionLog:
    name = "intercept_decision_log"

    def __init__(self, intercept: InterceptAddon) -> None:
        self.intercept = intercept
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.path: Path | None = None
        self._file: _LogFile | None = None
        self._redact: frozenset[str] = frozenset()
        self._with_args = False  # intercept_log_args, read once per configure
        intercept.decision_hooks.append(self.record)

    def load(self, loader: Any) -> None:
        loader.add_option("intercept_log", str, "on",
                          f"Decision log (JSON lines): on ({FILE_NAME} in mitmproxy's confdir), off, or a path.")
        loader.add_option("intercept_log_args", bool, False,
                          "Write each call's arguments (redacted) to the decision log, not only their hash.")
        loader.add_option("intercept_log_redact", str, DEFAULT_REDACT,
                          "Comma-separated argument keys whose values are redacted at any depth (case-insensitive).")
        loader.add_option("intercept_log_max_bytes", int, 10 * 1024 * 1024,
                          "Rotate the decision log when it would grow past this size; 0: never rotate.")
        loader.add_option("intercept_log_keep", int, 5, "Rotated decision log files kept (FILE.1 … FILE.N).")

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "intercept_log_max_bytes" in updated and opts.intercept_log_max_bytes < 0:
            raise exceptions.OptionsError("intercept_log_max_bytes must be 0 (no rotation) or positive")
        if "intercept_log_keep" in updated and opts.intercept_log_keep < 1:
            raise exceptions.OptionsError("intercept_log_keep must be at least 1")
        self._with_args = opts.intercept_log_args
        if "intercept_log_redact" in updated:
            self._redact = frozenset(k.strip().lower() for k in opts.intercept_log_redact.split(",") if k.strip())
        if updated & {"intercept_log", "intercept_log_max_bytes", "intercept_log_keep", "confdir"}:
            self._open(opts.intercept_log, os.path.expanduser(opts.confdir))

    def _open(self, spec: str, confdir: str) -> None:
        if spec == "off":
            self.done()
            return
        path = Path(confdir, FILE_NAME) if spec == "on" else Path(spec).expanduser()
        try:  # the new file first: if it cannot be opened, the option is refused and the old one stays
            path.parent.mkdir(parents=True, exist_ok=True)
            opened = _LogFile(path, ctx.options.intercept_log_max_bytes, ctx.options.intercept_log_keep)
        except OSError as exc:
            raise exceptions.OptionsError(f"intercept_log: cannot open {path}: {exc}") from None
        self.done()
        self._file, self.path = opened, path

    def done(self) -> None:
        """Write what is buffered, then close the file."""
        if self._file is not None:
            self._file.close()
        self._file = self.path = None

    def flush(self) -> None:
        """Hand every line recorded so far to the OS."""
        if self._file is not None:
            self._file.flush()

    def record(self, flow: http.HTTPFlow, decision: Decision | None, arguments: Mapping[str, Any] | None) -> None:
        if self._file is None:
            return
        try:
            line = jsonrpc.dumps(self.entry(flow, decision, arguments)) + b"\n"
        except Exception as exc:  # never let the audit trail break the decision itself
            log.error(f"intercept: decision log entry not written: {exc!r}")
            return
        try:
            self._file.write(line)
        except OSError as exc:
            log.error(f"intercept: decision log {self.path} not written: {exc}")

    def entry(self, flow: http.HTTPFlow, decision: Decision | None,
              arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        meta = flow.metadata
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "instance": self.instance,
            "flow": flow.id,
            "agent": meta.get("mcp.agent"),
            "user": meta.get("mcp.user"),
            "process": meta.get("mcp.process"),
            "session": meta.get("mcp.session"),
            "server": meta.get("mcp.server"),
        }
        if decision is None:
            entry.update(tool=meta.get("mcp.tool"), decision="refused", kind="protocol", rule=None,
                         message=meta.get("mcp.reason"), retry_after=None)
        else:
            entry.update(tool=decision.tool, decision="allow" if decision.allowed else "deny", kind=decision.kind,
                         rule=decision.rule, message=decision.message, retry_after=decision.retry_after)
        entry["blocked"] = entry["decision"] != "allow" and self.intercept.enforcing
        if "mcp.ask" in meta:  # asked a person: who answered, when, after how long (proxy/approvals.py)
            entry["asked"] = meta["mcp.ask"]
        if arguments is not None:
            shown = redact(arguments, self._redact)
            entry["args_sha256"] = args_digest(shown)
            if self._with_args:
                entry["arguments"] = shown
        return entry
