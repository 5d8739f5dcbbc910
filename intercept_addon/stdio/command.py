"""The ``intercept-addon stdio`` subcommand's arguments; the run itself is imported only when asked
(it needs the HTTP stack that comes with the ``scan`` extra)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("intercept-addon stdio: name the server's command after --", file=sys.stderr)
        return 2
    from intercept_addon.stdio import run

    return asyncio.run(run.run(command, policy=args.policy, web=args.web, options=args.set, name=args.name))


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "stdio", help="run a stdio MCP server behind mitmproxy with the addon: a drop-in for its command",
        description="Start COMMAND as a stdio MCP server and speak stdio to the agent; every message between "
                    "them passes through mitmdump (mitmweb with --web) running the addon, as Streamable HTTP "
                    "on 127.0.0.1.")
    parser.add_argument("--policy", metavar="FILE", help="the policy file (intercept_policy)")
    parser.add_argument("--web", action="store_true", help="run mitmweb instead of mitmdump (its UI on 127.0.0.1)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a mitmproxy option for the proxy, as mitmdump --set; repeatable")
    parser.add_argument("--name", help="the server's name in the proxied URL, http://127.0.0.1:PORT/stdio/NAME/mcp "
                                       "(default: from COMMAND)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS")
    parser.set_defaults(run=_run)
