"""Reading the decision log back: the summary behind ``python -m intercept_addon status``
(totals, deny rate, top rules, decisions per server, recent denials)."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from intercept_addon.proxy.table import format_table
from intercept_addon.wire.text import escaped


def log_files(path: Path) -> list[Path]:
    """The log and its rotated files, oldest first (FILE.N … FILE.1, FILE)."""
    rotated = []
    for sibling in path.parent.glob(f"{path.name}.*"):
        suffix = sibling.name.removeprefix(f"{path.name}.")
        if suffix.isdigit():
            rotated.append((int(suffix), sibling))
    return [p for _, p in sorted(rotated, reverse=True)] + ([path] if path.exists() else [])


@dataclass
class Summary:
    files: list[Path]
    entries: int = 0
    skipped: int = 0  # lines that are not entries (a line cut by a crash, say)
    verdicts: Counter[str] = field(default_factory=Counter)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, tool) of non-allow decisions
    first: str | None = None
    last: str | None = None
    denials: list[dict[str, Any]] = field(default_factory=list)  # the most recent, oldest first
    servers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (server, allow|deny|refused)

    @property
    def deny_rate(self) -> float:
        return (self.entries - self.verdicts["allow"]) / self.entries if self.entries else 0.0


def summarize(path: Path, *, recent: int = 10) -> Summary:
    summary = Summary(log_files(path))
    denials: deque[dict[str, Any]] = deque(maxlen=recent)
    for entry in _entries(summary):
        summary.entries += 1
        summary.first = summary.first or entry.get("time")
        summary.last = entry.get("time")
        verdict = str(entry.get("decision"))
        summary.verdicts[verdict] += 1
        if entry.get("server"):
            summary.servers[(str(entry["server"]), verdict)] += 1
        if verdict != "allow":
            summary.rules[(entry.get("rule") or f"({entry.get('kind')})", entry.get("tool") or "-")] += 1
            denials.append(entry)
    summary.denials = list(denials)
    return summary


def _entries(summary: Summary) -> Iterable[dict[str, Any]]:
    for file in summary.files:
        with open(file, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                if isinstance(entry, dict) and "decision" in entry:
                    yield entry
                elif line.strip():
                    summary.skipped += 1


def report(summary: Summary, *, top: int = 10) -> list[str]:
    """The summary as lines of text: totals, deny rate, top rules, recent denials."""
    if not summary.files:
        return ["no decision log found"]
    v = summary.verdicts
    lines = [
        f"decision log: {', '.join(str(f) for f in summary.files)}",
        f"from {escaped(str(summary.first or '-'))} to {escaped(str(summary.last or '-'))}",  # read from the file
        f"decisions: {summary.entries}  allowed {v['allow']}  denied {v['deny']}  refused {v['refused']}"
        f"  deny rate {summary.deny_rate:.1%}",
    ]
    if summary.skipped:
        lines.append(f"skipped {summary.skipped} unreadable lines")
    if summary.rules:
        lines += ["", "top rules (denials and refusals):"]
        lines += format_table(["count", "rule", "tool"],
                              [(n, rule, tool) for (rule, tool), n in summary.rules.most_common(top)])
    if summary.servers:
        names = sorted({server for server, _ in summary.servers})
        lines += ["", "decisions per server:"]
        lines += format_table(["server", "allowed", "denied", "refused"],
                              [(name, *(summary.servers[(name, v)] for v in ("allow", "deny", "refused")))
                               for name in names])
    if summary.denials:
        servers = any(d.get("server") for d in summary.denials)
        lines += ["", f"recent denials (last {len(summary.denials)}):"]
        lines += format_table(
            ["time", "agent", *(["server"] if servers else []), "tool", "decision", "rule", "message"],
            [(d.get("time", "-"), d.get("agent") or d.get("session") or "-",
              *([d.get("server") or "-"] if servers else []), d.get("tool") or "-",
              d["decision"] + ("" if d.get("blocked", True) else " (not blocked)"),
              d.get("rule") or "-", d.get("message") or "-") for d in summary.denials])
    return lines
