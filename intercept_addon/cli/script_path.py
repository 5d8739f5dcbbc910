"""``intercept-addon script``: the path of the installed mitmproxy script, for
``mitmdump -s "$(intercept-addon script)"`` (nobody has to find it in site-packages)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# Found beside this package, not imported: importing it would load mitmproxy just to print a path.
SCRIPT = Path(__file__).resolve().parents[1] / "script" / "intercept.py"


def _run(args: argparse.Namespace) -> int:
    if not SCRIPT.is_file():  # a build that left the script out
        print(f"intercept-addon: the mitmproxy script is missing: {SCRIPT}", file=sys.stderr)
        return 1
    print(SCRIPT)
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("script", help="print the path of the mitmproxy script, for "
                                           "mitmdump -s \"$(intercept-addon script)\"")
    parser.set_defaults(run=_run)
