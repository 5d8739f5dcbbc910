"""Which policy governs which MCP server: ``servers:`` URL patterns, and the set of policies.

A server is the URL the agent sends its MCP requests to, as the proxy will connect to it
(scheme, host, port, path; never the query). A pattern names servers over the same four parts,
``*`` matching any run of characters within one part: ``https://api.githubcopilot.com/mcp*``,
``http://127.0.0.1:*/*``. An omitted port is the scheme's default, an omitted path any path.

Hosts compare case-insensitively, and so do paths: a server that routes ``/MCP`` like ``/mcp``
must not be a way around the policy that names ``/mcp``. A path a server could read as another
one (dot segments, empty segments, backslashes, escaped unreserved characters or slashes) is
refused before it is matched (:func:`path_refusal`), so no spelling of a governed path is read
as an ungoverned one.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from intercept_addon.wire.text import shown

DEFAULT_PORTS = {"http": 80, "https": 443}
_PATTERN = re.compile(r"(?P<scheme>https?|\*)://(?P<host>\[[^\]/]*\]|[^/:\[\]]*)(?::(?P<port>\d{1,5}|\*))?(?P<path>/.*)?",
                      re.IGNORECASE | re.DOTALL)
# Escapes a server may decode before routing: unreserved characters, "/", "\" and "."
# (a double-encoded "%25" too, and control characters).
_RISKY_ESCAPE = re.compile(r"%(?:[46][1-9a-f]|[57][0-9a]|3[0-9]|2[5def]|5[cf]|7[ef]|[01][0-9a-f])", re.IGNORECASE)


class ServerUrl(NamedTuple):
    scheme: str  # lower case
    host: str  # lower case, IPv6 without brackets
    port: int
    path: str  # without the query

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def canonical_host(host: str) -> str:
    """One spelling per host: lower case, no trailing dot, an IP address in its usual form
    (``127.1``, ``0x7f.0.0.1`` and ``2130706433`` all connect to 127.0.0.1; so does
    ``::ffff:127.0.0.1``)."""
    host = host.strip("[]").lower().rstrip(".")
    if "%" in host and ":" in host:  # an IPv6 zone id (fe80::1%eth0) picks the interface, not the address
        host = host.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.inet_ntoa(socket.inet_aton(host)))  # forms getaddrinfo accepts
        except OSError:
            return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:  # connecting to 0.0.0.0 or :: reaches this machine's loopback
        return "127.0.0.1" if address.version == 4 else "::1"
    return str(address)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def server_url(scheme: str, host: str, port: int, path: str) -> ServerUrl:
    return ServerUrl(scheme.lower(), canonical_host(host), port, path.split("?", 1)[0])


def path_refusal(path: str) -> str | None:
    """Why a request path cannot be matched as written (a server may read it as another path)."""
    path = path.split("?", 1)[0]
    if not path.startswith("/"):
        return "the path does not start with /"
    if "\\" in path or "//" in path:
        return "the path has a backslash or an empty segment"
    if "#" in path:
        return "the path has a fragment"
    segments = path.split("/")
    # Servlet containers drop ";params" from a segment, so "..;x" is ".." to them
    if any(s.split(";", 1)[0] in (".", "..") for s in segments):
        return "the path has a dot segment"
    if _RISKY_ESCAPE.search(path):
        return "the path escapes a character a server reads as itself"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        return "the path has a control character or a space"
    return None


@dataclass(frozen=True, slots=True)
class Glob:
    """``*`` matching any run of characters, without case, in time linear in the text: a regex
    ``.*`` per star would backtrack (an agent's 4 kB path against ``/*/*/*/mcp`` froze the loop
    for seconds). The prefix and suffix are fixed, the middle parts found left to right."""

    text: str  # lower case

    def match(self, value: str) -> bool:
        value = value.lower()
        parts = self.text.split("*")
        if len(parts) == 1:
            return value == parts[0]
        first, last = parts[0], parts[-1]
        if len(value) < len(first) + len(last) or not value.startswith(first) or not value.endswith(last):
            return False
        pos, end = len(first), len(value) - len(last)
        for middle in parts[1:-1]:
            found = value.find(middle, pos, end)
            if found < 0:
                return False
            pos = found + len(middle)
        return True


@dataclass(frozen=True, slots=True)
class ServerPattern:
    text: str  # as the policy wrote it: the server's name in decisions, logs and counters
    scheme: str  # http, https or *
    host_text: str  # canonical (policy/servers.canonical_host) unless it has a *
    host: Glob
    port: int | None  # None: any port
    path: Glob

    @property
    def canonical(self) -> tuple[str, str, int | None, str]:
        """What two patterns must differ in to name different servers."""
        return self.scheme, self.host_text, self.port, self.path.text

    @property
    def names_address(self) -> bool:
        """Does it name a server by IP address (then a host's resolved addresses count too)?"""
        return is_ip(self.host_text)

    def matches(self, url: ServerUrl) -> bool:
        return ((self.scheme == "*" or self.scheme == url.scheme)
                and (self.port is None or self.port == url.port)
                and self.host.match(url.host)
                and self.path.match(url.path))


def parse_pattern(text: str) -> ServerPattern:
    """A ``servers:`` entry; raises ValueError naming what is wrong with it."""
    m = _PATTERN.fullmatch(text)
    if m is None:
        raise ValueError(f"server pattern must look like scheme://host[:port][/path], got {shown(text)}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise ValueError(f"server pattern has a space or control character: {shown(text)}")
    scheme, host = m["scheme"].lower(), m["host"]
    host = host.strip("[]").lower() if "*" in host else canonical_host(host)
    if not host:
        raise ValueError(f"server pattern has no host (use * for any host), got {shown(text)}")
    if "?" in (m["path"] or "") or "#" in (m["path"] or ""):
        raise ValueError(f"server pattern matches the path only, without query or fragment: {shown(text)}")
    if m["port"] == "*":
        port = None
    elif m["port"] is not None:
        port = int(m["port"])
        if not 0 < port < 65536:
            raise ValueError(f"server pattern port must be 1-65535, got {shown(text)}")
    elif scheme == "*":
        raise ValueError(f"server pattern with scheme * needs a port (or :*), got {shown(text)}")
    else:
        port = DEFAULT_PORTS[scheme]
    return ServerPattern(text, scheme, host, Glob(host.lower()), port, Glob((m["path"] or "/*").lower()))


@dataclass(frozen=True, slots=True)
class Named:
    """One policy of a set: where it came from and the servers it names (None: the fallback)."""

    source: str
    servers: tuple[ServerPattern, ...] | None


def check_set(policies: Sequence[Named]) -> list[str]:
    """Problems that make a set of policies unusable together (each policy is valid alone)."""
    problems = []
    fallbacks = [p.source for p in policies if p.servers is None]
    if len(fallbacks) > 1 and any(p.servers is not None for p in policies):
        problems.append(f"more than one policy names no servers (only one can be the fallback): "
                        f"{', '.join(fallbacks)}")
    elif len(fallbacks) > 1:
        problems.append(f"several policies and none names its servers: {', '.join(fallbacks)}; "
                        "give each a servers: list")
    named: dict[tuple[str, str, int | None, str], tuple[str, str]] = {}
    for policy in policies:
        for pattern in policy.servers or ():
            other = named.setdefault(pattern.canonical, (policy.source, pattern.text))
            if other[0] != policy.source:
                problems.append(f"server {shown(pattern.text)} is named by two policies: {other[0]} and {policy.source}")
    return problems


def governing(policies: Sequence[Named], url: ServerUrl) -> list[tuple[Named, ServerPattern]]:
    """Every (policy, pattern) naming ``url``; more than one policy is a conflict for the caller."""
    return [(p, pattern) for p in policies for pattern in p.servers or () if pattern.matches(url)]
