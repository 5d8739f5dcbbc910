"""Command line: ``python -m intercept_addon validate FILE...`` (also the ``intercept-addon`` script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .policy_file import PolicyError, load_policy


def _validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed = True
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            continue
        rules = [rule for tool in policy.tools.values() for rule in tool.rules]
        counters = sum(1 for rule in rules if rule.counter is not None)
        print(
            f"{path}: OK ({len(policy.tools)} tools, {len(rules)} rules, {counters} counters, "
            f"{len(policy.hide)} hidden, default {policy.default})"
        )
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intercept-addon", description="Policy tools for the intercept-addon mitmproxy addon."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check policy files; print every error with FILE:LINE:COL")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(run=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
