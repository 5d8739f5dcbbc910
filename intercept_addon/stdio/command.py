"""The ``intercept-addon stdio`` subcommand's arguments; the run itself is imported only when asked
(it needs the HTTP stack that comes with the ``scan`` extra)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import ipaddress
import sys
from typing import Any
from urllib.parse import urlsplit


def _loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    try:
        return parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.serve:
        if command or args.proxy:
            print("intercept-addon stdio: --serve runs only the shared proxy (no COMMAND, no --proxy)", file=sys.stderr)
            return 2
        from intercept_addon.stdio import proxy

        proxy.serve_shared(args.port, policy=args.policy, web=args.web, options=args.set)
    if not command:
        print("intercept-addon stdio: name the server's command after --", file=sys.stderr)
        return 2
    if args.proxy and (args.policy or args.web or args.set or not _loopback_http(args.proxy)):
        print("intercept-addon stdio: --proxy takes an http://127.0.0.1:PORT URL, and the policy and options "
              "are the shared proxy's (given to --serve)", file=sys.stderr)
        return 2
    missing = [name for name in ("uvicorn", "httpx2") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"intercept-addon stdio: needs {' and '.join(missing)}, which come with the scan extra: "
              "pip install 'intercept-addon[scan]'", file=sys.stderr)
        return 1
    from intercept_addon.stdio import run

    return asyncio.run(run.run(command, policy=args.policy, web=args.web, options=args.set, name=args.name,
                               shared=args.proxy))


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "stdio", help="run a stdio MCP server behind mitmproxy with the addon: a drop-in for its command",
        description="Start COMMAND as a stdio MCP server and speak stdio to the agent; every message between "
                    "them passes through mitmdump (mitmweb with --web) running the addon, as Streamable HTTP "
                    "on 127.0.0.1.")
    parser.add_argument("--policy", metavar="FILE", help="the policy file or directory (intercept_policy)")
    parser.add_argument("--web", action="store_true", help="run mitmweb instead of mitmdump (its UI on 127.0.0.1)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a mitmproxy option for the proxy, as mitmdump --set; repeatable")
    parser.add_argument("--name", help="the server's name in the proxied URL, http://127.0.0.1:PORT/stdio/NAME/mcp "
                                       "(default: from COMMAND)")
    parser.add_argument("--serve", action="store_true",
                        help="run only a proxy that several wrapped servers share (one timeline, one decision log, "
                             "one state store): each of them is started with --proxy http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=8080, help="with --serve: its port on 127.0.0.1 (default 8080)")
    parser.add_argument("--proxy", metavar="URL",
                        help="go through this running --serve proxy instead of starting one")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS")
    parser.set_defaults(run=_run)
