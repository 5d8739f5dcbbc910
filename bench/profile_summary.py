"""Where a py-spy profile of mitmdump spends its time per call (bench_cost.py --profile writes them).

    .venv/bin/python bench/profile_summary.py bench/results/profile-run-sqlite.txt [--top 30]
    .venv/bin/python bench/profile_summary.py PROFILE BASELINE   # what PROFILE spends beyond BASELINE

Microseconds per call = samples / rate / calls (the first line, ``# calls N rate R``, says how
many calls were answered while sampling). Frames are grouped by function (line numbers
dropped). Shown: own time per function; the addon's functions by inclusive time (each counted
once per stack); with a baseline, the functions whose own time grew most.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r":\d+\)$")


def load(path: str) -> tuple[Counter[str], Counter[str], float]:
    """(own us/call, addon-inclusive us/call, busy us/call) by function."""
    text = Path(path).read_text()
    m = re.match(r"# calls (\d+) rate (\d+)", text)
    if m is None:
        raise SystemExit(f"{path}: no '# calls N rate R' line")
    per_sample = 1e6 / int(m.group(2)) / max(int(m.group(1)), 1)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = 0.0
    for line in text.splitlines()[1:]:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():  # a frame name py-spy cut across lines
            continue
        frames = [LINE.sub(")", f) for f in stack.split(";")]
        if frames[-1].startswith("EpollSelector.select") or frames[-1].startswith("select ("):
            continue  # idle: waiting for the network
        us = int(count) * per_sample
        busy += us
        own[frames[-1]] += us
        for f in {f for f in frames if "intercept_addon/" in f}:
            inclusive[f] += us
    return own, inclusive, busy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile")
    p.add_argument("baseline", nargs="?")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    own, inclusive, busy = load(args.profile)
    addon = max(inclusive.values(), default=0.0)
    print(f"{args.profile}: {busy:.0f} us/call busy, of which the outermost addon frame {addon:.0f} us")
    print(f"\nown time, us/call (top {args.top}):")
    for f, us in own.most_common(args.top):
        print(f"  {us:7.1f}  {f}")
    print("\naddon functions, inclusive us/call:")
    for f, us in inclusive.most_common(args.top):
        print(f"  {us:7.1f}  {f}")
    if args.baseline:
        base_own, _, base_busy = load(args.baseline)
        print(f"\nbeyond {args.baseline} ({base_busy:.0f} us/call busy): +{busy - base_busy:.0f} us/call; "
              "own time grown most:")
        grown = Counter({f: us - base_own.get(f, 0.0) for f, us in own.items()})
        for f, us in grown.most_common(args.top):
            print(f"  {us:+7.1f}  {f}")


if __name__ == "__main__":
    main()
