"""``intercept-addon scan URL``: write a starting policy from a running MCP server's tool list.

It connects with the official MCP SDK (Streamable HTTP, falling back to the legacy HTTP+SSE
transport at the same URL), lists every tool page by page, and writes a policy to review:

* ``default: deny``: the tools listed at scan time are the allowlist; a tool the server adds
  later is denied until someone adds it.
* Tools are grouped by risk: the annotations the server publishes first (``readOnlyHint``,
  ``destructiveHint``; ``idempotentHint`` sets the rate limit), the tool's name only when it
  has neither hint. Destructive tools get an active ``deny`` (fail closed: a person decides to
  allow one by deleting a rule); write tools a rate limit; read-only tools no rule.
* A parameter whose schema fixes its values (``enum``, ``const``, ``anyOf`` of those) gets an
  ``in`` condition with them.
* Every tool's description and parameters are written as comments, and its fingerprint under
  ``fingerprints`` (see fingerprint.py).

The server controls every name and description it lists. They reach the file only as
double-quoted YAML scalars with every non-printable character escaped, or as comment text
whose line breaks start new comment lines, so no string can add a line of policy. Names that
would act as globs (or are reserved, or empty) are not written as tool keys.

The SDK (``mcp``) is imported only here, only when scanning: it is the ``scan`` extra, kept out
of the addon's runtime dependencies (it pulls in a web server stack, and on Python 3.12 its
anyio cannot be installed beside mitmproxy's pinned typing-extensions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from intercept_addon.policy.fingerprint import fingerprint
from intercept_addon.policy.schemas import listed_values
from intercept_addon.wire.mcp import DEFAULT_TOOL_NAME
from intercept_addon.policy.values import GLOBAL_NAMESPACE, is_glob
from intercept_addon.policy.file import PolicyError, parse_policy

STYLES = ("catalogue", "intercept")
DESTRUCTIVE, WRITE, READ = "destructive", "write", "read-only"
WRITE_LIMIT = 10  # calls a minute for a tool that writes
IDEMPOTENT_WRITE_LIMIT = 30  # ... and for one whose repeats change nothing (idempotentHint)
MAX_PAGES = 1000  # a server that never stops paging is refused
MAX_ENUM_VALUES = 100  # longer value lists are shown, not turned into a condition
MAX_COMMENT_CHARS = 2000  # of one description; the fingerprint covers all of it
ON_CHANGE = "hide"

# -- YAML text no server string can break out of -----------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")
# Plain words YAML 1.1 reads as booleans or null (PyYAML, and Go's yaml for Intercept).
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
MAX_SIMPLE_KEY = 1000  # PyYAML refuses an implicit key longer than 1024 characters
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(text: str, *, quoting: bool) -> str:
    """Every character that is not printable as itself as a YAML escape (``\\x``, ``\\u``,
    ``\\U``): line breaks of any kind (``\\n``, NEL, U+2028/9), controls, format characters
    such as bidi overrides and BOMs, surrogates, unassigned code points."""
    out = []
    for ch in text:
        if quoting and ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def quoted(text: str) -> str:
    return f'"{_escape(text, quoting=True)}"'


def scalar(text: str) -> str:
    """A string as YAML that reads back as exactly that string: plain when unambiguous."""
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return quoted(text)


def value(item: Any) -> str:
    """A JSON scalar or list of them as YAML flow text that reads back as the same value."""
    if item is None:
        return "null"
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if item != item:
            raise ValueError("NaN has no YAML form here")
        if item in (float("inf"), float("-inf")):
            return ".inf" if item > 0 else "-.inf"
        text = repr(item)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # YAML 1.1 reads 1e+16 as a string; 1.0e+16 is a float
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(item, str):
        return scalar(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"no YAML form for {type(item).__name__}")


def key(indent: str, name: str) -> str:
    """A mapping key line ending in ``:``; the caller appends `` value`` or a nested block."""
    text = scalar(name)
    if len(text) <= MAX_SIMPLE_KEY:
        return f"{indent}{text}:"
    return f"{indent}? {text}\n{indent}:"


def comment(indent: str, text: str, lead: str = "") -> list[str]:
    """Comment lines showing ``text``, ``lead`` before each: each of its lines (split at every
    kind of line break) is its own comment line, so no text can end the comment."""
    lines = text.splitlines() or [""]
    return [f"{indent}# {lead}{_escape(line, quoting=False)}".rstrip() for line in lines]


# -- what a tool is -----------------------------------------------------------------------------

_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")
DESTRUCTIVE_WORDS = frozenset(
    "delete del remove rm destroy drop purge wipe erase truncate kill terminate revoke reset "
    "overwrite uninstall unlink evict cancel clear".split())
WRITE_WORDS = frozenset(
    "create add insert update upsert set put post patch edit modify write save upload send publish "
    "push merge move rename copy generate run exec execute invoke start stop restart deploy install "
    "charge pay transfer refund book order submit approve assign close open enable disable archive "
    "import sync commit apply trigger schedule register grant invite comment reply sign buy sell "
    "append fork tag label lock unlock".split())
READ_WORDS = frozenset(
    "get list read search find fetch query describe show view lookup count status check inspect "
    "browse retrieve download info stat ping echo explain preview validate diff log logs history "
    "whoami version health help".split())
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool
    description: str | None
    default: str | None  # as JSON text
    values: list[Any] | None  # the values the schema allows, when it lists them


@dataclass(frozen=True)
class ToolEntry:
    name: str
    risk: str
    why: str
    hints: dict[str, bool]
    description: str | None
    params: tuple[Param, ...]
    fingerprint: str

    @property
    def rate_limit(self) -> int:
        return IDEMPOTENT_WRITE_LIMIT if self.hints.get("idempotentHint") is True else WRITE_LIMIT

    @property
    def key_problem(self) -> str | None:
        """Why this name cannot be a key under ``tools`` (it would not mean this tool alone)."""
        if not self.name.strip():
            return "the name is empty"
        if self.name == GLOBAL_NAMESPACE:
            return f'"{GLOBAL_NAMESPACE}" is reserved for shared counters'
        if self.name == "*" or is_glob(self.name):
            return "the name has glob characters (* ? [): as a key it would also match other tools"
        return None


def name_words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


def classify(name: str, annotations: Any) -> tuple[str, str]:
    """(risk, why): the server's hints first, the tool's name only without them."""
    hints = annotations if isinstance(annotations, Mapping) else {}
    read_only, destructive = hints.get("readOnlyHint"), hints.get("destructiveHint")
    if read_only is True:
        return READ, "annotations: readOnlyHint"
    if destructive is True:
        return DESTRUCTIVE, "annotations: destructiveHint"
    if destructive is False:
        return WRITE, "annotations: destructiveHint false"
    if read_only is False:  # MCP: destructiveHint defaults to true for a tool that is not read-only
        return DESTRUCTIVE, "annotations: readOnlyHint false, destructiveHint unset (defaults to true)"
    words = name_words(name)
    for risk, vocabulary in ((DESTRUCTIVE, DESTRUCTIVE_WORDS), (WRITE, WRITE_WORDS), (READ, READ_WORDS)):
        hit = next((w for w in words if w in vocabulary), None)
        if hit is not None:
            return risk, f'no annotations; the name says "{hit}"'
    return WRITE, "no annotations, and the name says nothing: treated as a write"


def _type_text(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, str):
        items = schema.get("items")
        if kind == "array" and isinstance(items, Mapping) and isinstance(items.get("type"), str):
            return f"array of {items['type']}"
        return kind
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    branches = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(branches, list):
        return " | ".join(_type_text(b) if isinstance(b, Mapping) else "?" for b in branches)
    return "any"


def parameters(schema: Any) -> tuple[Param, ...]:
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        return ()
    required = schema.get("required")
    required = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    out = []
    for name, prop in schema["properties"].items():
        prop = prop if isinstance(prop, Mapping) else {}
        description = prop.get("description")
        default = _json_text(prop["default"]) if "default" in prop else None
        out.append(Param(str(name), _type_text(prop), name in required,
                         description if isinstance(description, str) else None, default, listed_values(prop)))
    return tuple(out)


def _json_text(item: Any) -> str:
    try:
        return json.dumps(item, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(item)


def describe(tool: Mapping[str, Any]) -> ToolEntry:
    name = tool["name"]
    annotations = tool.get("annotations")
    hints = {h: annotations[h] for h in HINTS
             if isinstance(annotations, Mapping) and isinstance(annotations.get(h), bool)}
    risk, why = classify(name, annotations)
    description = tool.get("description")
    return ToolEntry(name, risk, why, hints, description if isinstance(description, str) else None,
                     parameters(tool.get("inputSchema")), fingerprint(tool))


def in_condition(param: Param) -> str | None:
    """The ``in`` condition a parameter's listed values suggest, as a YAML flow mapping."""
    values = param.values
    if not values or len(values) > MAX_ENUM_VALUES or "." in param.name or not param.name:
        return None
    if not all(v is None or isinstance(v, (str, bool, int, float)) for v in values):
        return None
    if any(isinstance(v, float) and v != v for v in values):
        return None
    optional = "" if param.required else ", optional: true"
    return f"{{path: {scalar('args.' + param.name)}, op: in, value: {value(values)}{optional}}}"


# -- the policy text ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """What a scan found."""

    url: str
    transport: str
    protocol: str | None
    server: str | None
    tools: list[dict[str, Any]]


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment (the policy must not carry secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _tool_comment(entry: ToolEntry, indent: str) -> list[str]:
    lines = comment(indent, f"{scalar(entry.name)}: {entry.risk} ({entry.why})")
    if entry.hints:
        lines += comment(indent, "  annotations: " + ", ".join(
            f"{h}={'true' if v else 'false'}" for h, v in entry.hints.items()))
    if entry.hints.get("openWorldHint") is True:
        lines += comment(indent, "  reaches outside systems (openWorldHint)")
    description = entry.description or "(no description)"
    if len(description) > MAX_COMMENT_CHARS:
        rest = len(description) - MAX_COMMENT_CHARS
        description = f"{description[:MAX_COMMENT_CHARS]}\n... ({rest} more characters not shown)"
    lines += comment(indent, description, lead="    ")
    if not entry.params:
        lines += comment(indent, "  parameters: none")
    else:
        lines += comment(indent, "  parameters:")
        for p in entry.params:
            extra = f", default {p.default}" if p.default is not None else ""
            head = f"  - {scalar(p.name)} ({p.type}, {'required' if p.required else 'optional'}{extra})"
            if p.values is not None:
                head += ": one of " + ", ".join(_json_text(v) for v in p.values[:MAX_ENUM_VALUES])
                if len(p.values) > MAX_ENUM_VALUES:
                    head += f", ... ({len(p.values)} values)"
            lines += comment(indent, head)
            if p.description:
                lines += comment(indent, p.description[:MAX_COMMENT_CHARS], lead="      ")
    if not re.fullmatch(DEFAULT_TOOL_NAME, entry.name):
        lines += comment(indent, "  calls to it are refused by the proxy: the name has characters outside "
                                 "intercept_tool_names")
    return lines


def _rules(entry: ToolEntry, style: str) -> list[str]:
    """The rule list of one tool, as lines indented under its key."""
    catalogue = style == "catalogue"
    rules: list[list[str]] = []
    if entry.risk == DESTRUCTIVE:
        message = quoted("Destructive tool: denied by policy until a person allows it")
        rules.append(["action: deny", f"reason: {message}"] if catalogue
                     else ["name: destructive tool", "action: deny", f"on_deny: {message}"])
    else:
        if entry.risk == WRITE:
            limit = entry.rate_limit
            if catalogue:
                rules.append(["action: allow", f"rate_limit: {{max: {limit}, window: 60}}",
                              f'reason: "At most {limit} calls a minute per agent session"'])
            else:
                rules.append(["name: write rate limit", f"rate_limit: {limit}/minute",
                              f'on_deny: "At most {limit} calls a minute"'])
        conditions = [c for c in (in_condition(p) for p in entry.params) if c is not None]
        if conditions:
            head = ["action: allow"] if catalogue else ["name: arguments"]
            rules.append([*head, "conditions:", *(f"  - {c}" for c in conditions)])
    if not rules:
        return ["    rules: []"]
    lines = ["    rules:"]
    for rule in rules:
        lines.append(f"      - {rule[0]}")
        lines += [f"        {line}" for line in rule[1:]]
    return lines


GROUPS = (
    (DESTRUCTIVE, "destructive: denied until a person allows them (delete the deny rule)"),
    (WRITE, "write: rate limited"),
    (READ, "read-only: allowed"),
)


def entries_of(tools: Sequence[Mapping[str, Any]]) -> tuple[list[ToolEntry], list[str]]:
    """One entry per tool name, in the server's order, and the names it listed again."""
    entries: list[ToolEntry] = []
    repeated: list[str] = []
    seen: set[str] = set()
    for tool in tools:
        if tool["name"] in seen:
            repeated.append(tool["name"])
            continue
        seen.add(tool["name"])
        entries.append(describe(tool))
    return entries, repeated


def summary(entries: Sequence[ToolEntry]) -> str:
    count = {risk: sum(1 for e in entries if e.risk == risk) for risk, _ in GROUPS}
    return (f"{len(entries)} tools: {count[DESTRUCTIVE]} destructive (denied), {count[WRITE]} write "
            f"(rate limited), {count[READ]} read-only")


def render_policy(listing: Listing, *, style: str = "catalogue", now: datetime | None = None) -> str:
    """The policy text for a tool listing (see the module docstring)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}")
    entries, repeated = entries_of(listing.tools)
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    url = public_url(listing.url)
    per = "per agent session (sliding window)" if style == "catalogue" else "per tool for all agents (calendar minute)"
    server = scalar(listing.server) if listing.server is not None else "(unnamed)"
    out = comment("", f"Starting policy for the MCP server {server} at {url},")
    out += comment("", f"written by `intercept-addon scan` on {when} ({listing.transport}, "
                       f"MCP {listing.protocol or 'unknown'}, {style} form).")
    out += comment("", summary(entries) + ".")
    out += [
        "#",
        "# Review it before use: the annotations it relies on are hints the server chose.",
        "# - default: deny: only the tools below may be called; a tool the server adds later",
        "#   is denied until you add it here.",
        "# - Destructive tools are denied: delete a tool's deny rule to allow it.",
        f"# - Tools that write get a rate limit: {WRITE_LIMIT} calls a minute ({IDEMPOTENT_WRITE_LIMIT} when "
        "idempotentHint),",
        f"#   {per}.",
        "# - A parameter whose schema lists its values gets an `in` condition with them.",
        "# - Read-only tools are allowed without rules.",
        "# - fingerprints pins every tool's name, description and input schema (at the end).",
        'version: "1"',
        f"description: {quoted(f'Written by intercept-addon scan from {url}')}",
        "default: deny",
        "",
    ]
    body: list[str] = []
    for risk, title in GROUPS:
        group = [e for e in entries if e.risk == risk]
        if not group:
            continue
        body += ["", f"  # ---- {title} ----"]
        for entry in group:
            body += ["", *_tool_comment(entry, "  ")]
            problem = entry.key_problem
            if problem is not None:
                body += comment("  ", f"  not written as a policy key: {problem};")
                body += comment("  ", "  with default: deny it cannot be called")
                continue
            body += [key("  ", entry.name), *_rules(entry, style)]
    for name in repeated:
        body += ["", *comment("  ", f"{scalar(name)}: listed again by the server; only its first definition is used")]
    any_key = any(e.key_problem is None for e in entries)
    out += ["tools:" if any_key else "tools: {}", *body]
    out += [
        "",
        "# Fingerprints: sha256 of each tool's name, description and input schema at scan time.",
        "# A tool served with another definition flags the tools/list flow in mitmproxy, and then",
        "# on_change flag: nothing more; deny: its calls are denied; hide: it is also removed",
        "# from tools/list. Re-run scan (or update a fingerprint) after reviewing a change.",
        "fingerprints:",
        f"  on_change: {ON_CHANGE}",
    ]
    if entries:
        out += ["  tools:", *(f"{key('    ', e.name)} {quoted(e.fingerprint)}" for e in entries)]
    else:
        out += ["  tools: {}"]
    return "\n".join(out) + "\n"


# -- listing the tools with the official SDK -------------------------------------------------------


class ScanError(Exception):
    """The server could not be scanned; the message says why."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_reason(e) for e in exc.exceptions)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        tools += [t.model_dump(by_alias=True, exclude_none=True) for t in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            return tools
        if cursor in seen:
            raise ScanError(f"the server repeated the cursor {cursor!r}: its tool list never ends")
        seen.add(cursor)
    raise ScanError(f"the server's tool list has more than {MAX_PAGES} pages")


async def _streamable_http(url: str, headers: dict[str, str], timeout: float) -> Listing:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout))
    async with http, Client(streamable_http_client(url, http_client=http), cache=None,
                            read_timeout_seconds=timeout) as client:
        tools = await _all_pages(lambda cursor: client.list_tools(cursor=cursor))
        info = client.server_info
        return Listing(url, "Streamable HTTP", client.protocol_version, info.name if info else None, tools)


async def _legacy_sse(url: str, headers: dict[str, str], timeout: float) -> Listing:
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.types import PaginatedRequestParams

    async with sse_client(url, headers=headers, timeout=timeout, sse_read_timeout=timeout) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=timeout) as session:
            init = await session.initialize()
            tools = await _all_pages(lambda cursor: session.list_tools(
                params=PaginatedRequestParams(cursor=cursor) if cursor else None))
            return Listing(url, "legacy HTTP+SSE", init.protocol_version, init.server_info.name, tools)


async def list_server_tools(url: str, headers: dict[str, str] | None = None, timeout: float = 30.0) -> Listing:
    """Every tool of the server at ``url``: Streamable HTTP first, then legacy HTTP+SSE."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise ScanError("scan needs the MCP SDK: pip install 'intercept-addon[scan]'") from None
    headers = headers or {}
    failures = []
    for transport, connect in (("Streamable HTTP", _streamable_http), ("legacy HTTP+SSE", _legacy_sse)):
        try:
            async with asyncio.timeout(timeout):
                return await connect(url, headers, timeout)
        except ScanError:
            raise
        except Exception as exc:
            failures.append(f"  {transport}: {_reason(exc)}")
    raise ScanError("\n".join([f"cannot list the tools at {public_url(url)}", *failures]))


# -- command line ------------------------------------------------------------------------------------

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_headers(items: Sequence[str]) -> dict[str, str]:
    """``["Name: value", ...]`` -> {name: value}; raise ValueError on a malformed one."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, val = item.partition(":")
        name, val = name.strip(), val.strip()
        if not sep or not _HEADER_NAME.fullmatch(name) or any(c in val for c in "\r\n\x00"):
            raise ValueError(f"--header must look like 'Name: value', got {item!r}")
        headers[name] = val
    return headers


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "scan", help="write a starting policy from a running MCP server's tool list",
        description="Connect to an MCP server (Streamable HTTP, else legacy HTTP+SSE), list every tool, "
                    "and write a policy to review: default deny, destructive tools denied, write tools "
                    "rate limited, listed argument values checked, every tool fingerprinted.")
    parser.add_argument("url", help="the server's MCP endpoint, e.g. http://127.0.0.1:8000/mcp (or its /sse URL)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the policy here (default: standard output)")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="an HTTP header sent with every request, e.g. Authorization; repeatable; "
                             "never written to the policy")
    parser.add_argument("--style", choices=STYLES, default="catalogue",
                        help="catalogue: rate_limit {max, window} per agent session (default); "
                             "intercept: Intercept's named rules and N/minute limits per tool")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for each connection attempt")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    parser.set_defaults(run=run)


def _write(path: Path, text: str) -> None:
    """Replace the file in one step: the addon may be watching it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    try:
        headers = parse_headers(args.header)
    except ValueError as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 2
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.force:
        print(f"scan: {output} exists; use --force to overwrite it", file=sys.stderr)
        return 1
    try:
        listing = asyncio.run(list_server_tools(args.url, headers, args.timeout))
    except ScanError as exc:
        print(f"scan: {exc}", file=sys.stderr)
        return 1
    text = render_policy(listing, style=args.style)
    try:
        parse_policy(text, str(output or "<scan>"))
    except PolicyError as exc:  # a bug in the writer: never write a policy that would not load
        print(f"scan: internal error, the policy written does not validate:\n{exc}", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(text)
    else:
        _write(output, text)
    print(f"scan: {listing.transport} (MCP {listing.protocol or 'unknown'}), {summary(entries_of(listing.tools)[0])}"
          + (f"; wrote {output}" if output else ""), file=sys.stderr)
    return 0
