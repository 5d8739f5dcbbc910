"""mitmproxy script: the share of mitmdump's CPU spent in garbage collections, printed at exit.

    mitmdump ... -s intercept_addon.py -s bench/gc_cost.py      # then load it, then stop it

Each collection is timed from gc.callbacks (CPU time, from when the proxy runs to its exit),
so the figure does not depend on how busy the machine is: it is what intercept_gc_freeze saves.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any


class GcCost:
    def __init__(self) -> None:
        self.spent = 0.0
        self.collections = [0, 0, 0]
        self._began: float | None = None
        self._cpu0 = time.process_time()
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.process_time()
        elif self._began is not None:
            self.spent += time.process_time() - self._began
            self.collections[info["generation"]] += 1

    def running(self) -> None:
        self._cpu0, self.spent, self.collections = time.process_time(), 0.0, [0, 0, 0]

    def done(self) -> None:
        cpu = time.process_time() - self._cpu0
        sys.stderr.write(f"GC {self.spent:.3f} s of {cpu:.3f} s CPU ({self.spent / max(cpu, 1e-9) * 100:.1f}%); "
                         f"collections by generation {self.collections}; frozen {gc.get_freeze_count()}\n")


addons = [GcCost()]
