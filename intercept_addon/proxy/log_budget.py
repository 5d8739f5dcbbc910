"""Per-decision lines in mitmproxy's event log: at most LINES_PER_SECOND a second.

A log record costs about as much as judging the call: mitmproxy hands each one to every
addon (the deprecated ``add_log`` event, after a self-pipe wake-up of the event loop) and the
terminal writes it. Under a flood of denials or refusals (an agent retrying in a loop, or
someone sending malformed requests to make the proxy work) the lines past the budget are
counted instead, and one line says how many were left out once the second is over. The
decision log keeps every decision either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("intercept")

LINES_PER_SECOND = 20


class LogBudget:
    def __init__(self, per_second: int = LINES_PER_SECOND, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._window = float("-inf")  # when the current second began
        self._written = 0
        self._left_out = 0

    def info(self, line: str) -> None:
        now = self._clock()
        if now - self._window >= 1.0:
            self._summary()
            self._window, self._written = now, 0
        if self._written < self.per_second:
            self._written += 1
            log.info(line)
            return
        self._left_out += 1
        if self._left_out == 1:  # said once the second is over, even if nothing else comes
            try:
                asyncio.get_running_loop().call_later(self._window + 1.0 - now, self._summary)
            except RuntimeError:  # no event loop (unit tests): said with the next line
                pass

    def _summary(self) -> None:
        if self._left_out:
            log.info(f"intercept: {self._left_out} more decisions in one second, not shown here "
                     f"(at most {self.per_second} lines a second); the decision log has every one")
            self._left_out = 0
