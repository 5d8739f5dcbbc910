"""Command line: ``python -m intercept_addon validate [--server URL] FILE...``, ``status [LOG]``, ``scan URL`` and
``script``, ``approvals`` (also the ``intercept-addon`` command)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from typing import TYPE_CHECKING, Any

from intercept_addon.stdio import command as stdio_command

if TYPE_CHECKING:
    from intercept_addon import scan
    from intercept_addon.policy.model import Policy


def _validate(args: argparse.Namespace) -> int:
    from intercept_addon import scan
    from intercept_addon.policy.file import PolicyError, files_of, load_policy
    from intercept_addon.policy.servers import Named, check_set

    listing = None
    if args.server is not None:
        try:
            listing = asyncio.run(scan.list_server_tools(args.server, scan.parse_headers(args.header), args.timeout))
        except (ValueError, scan.ScanError) as exc:
            print(f"validate: {exc}", file=sys.stderr)
            return 1
    failed = False
    loaded: list[Named] = []
    for path in [f for spec in args.files for f in (files_of(spec)[0] or [spec])]:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            continue
        rules = [rule for tool in policy.tools.values() for rule in tool.rules]
        counters = sum(1 for rule in rules if rule.counter is not None)
        servers = f"; servers {', '.join(p.text for p in policy.servers)}" if policy.servers else ""
        print(
            f"{path}: OK ({len(policy.tools)} tools, {len(rules)} rules, {counters} counters, "
            f"{len(policy.hide)} hidden, default {policy.default}{servers})"
        )
        loaded.append(Named(path, tuple(policy.servers) if policy.servers is not None else None))
        if listing is not None:
            failed = _report_coverage(path, policy, listing) or failed
    bound = any(named.servers is not None for named in loaded)
    for problem in check_set(loaded) if bound else ():  # the files as one intercept_policy value
        failed = True
        print(f"validate: {problem}", file=sys.stderr)
    return 1 if failed else 0


def _report_coverage(path: str, policy: Policy, listing: scan.Listing) -> bool:
    """Print what ``policy`` names that the listed server does not have; True if anything."""
    from intercept_addon import scan
    from intercept_addon.policy import coverage

    server = scan.public_url(listing.url)
    lines = coverage.compare(policy, listing.tools).lines(server)
    found = f"{len(lines)} finding{'s' if len(lines) != 1 else ''}" if lines else "every policy key and argument matches"
    print(f"{path} against {server} ({listing.transport}, {len(listing.tools)} tools): {found}")
    for line in lines:
        print(f"  {line}")
    return bool(lines)


def _status(args: argparse.Namespace) -> int:
    from intercept_addon.proxy.decision_log import FILE_NAME  # imports mitmproxy: only when asked
    from intercept_addon.proxy.decision_summary import report, summarize

    path = Path(args.log or Path("~/.mitmproxy", FILE_NAME)).expanduser()  # the proxy's default place
    summary = summarize(path, recent=args.recent)
    print("\n".join(report(summary, top=args.top)))
    return 0 if summary.files else 1


def build_parser() -> argparse.ArgumentParser:
    from intercept_addon import scan
    from intercept_addon.cli import approvals, script_path

    parser, sub = _parser()
    validate = sub.add_parser("validate", help="check policy files (or directories of them, as intercept_policy "
                                                "takes them); print every error with FILE:LINE:COL")
    validate.add_argument("files", nargs="+", metavar="FILE|DIR")
    validate.add_argument("--server", metavar="URL",
                          help="also compare each policy with this MCP server's tools (as scan connects): tool "
                               "keys and hide entries that match no tool, argument paths and in/not_in values "
                               "its input schemas do not have; any finding exits 1")
    validate.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                          help="with --server: an HTTP header sent with every request; repeatable")
    validate.add_argument("--timeout", type=float, default=30.0, help="with --server: seconds to connect and list")
    validate.set_defaults(run=_validate)
    status = sub.add_parser("status", help="summarise the decision log: totals, deny rate, top rules, recent denials")
    status.add_argument("log", nargs="?", metavar="LOG",
                        help="the decision log (its rotated files LOG.1 ... are read too); "
                             "default: ~/.mitmproxy/intercept-decisions.jsonl, where the proxy writes it")
    status.add_argument("--recent", type=int, default=10, help="recent denials shown (default %(default)s)")
    status.add_argument("--top", type=int, default=10, help="rules shown (default %(default)s)")
    status.set_defaults(run=_status)
    scan.add_parser(sub)  # the MCP SDK it needs is imported only when it runs
    script_path.add_parser(sub)
    approvals.add_parser(sub)
    stdio_command.add_parser(sub)
    return parser


def _parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(
        prog="intercept-addon", description="Policy tools for the intercept-addon mitmproxy addon."
    )
    return parser, parser.add_subparsers(dest="command", required=True)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["stdio"]:  # an agent waits for this one: start the proxy before importing the rest
        parser, sub = _parser()
        stdio_command.add_parser(sub)
    else:
        parser = build_parser()
    args = parser.parse_args(words)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
