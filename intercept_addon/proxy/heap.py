"""What start-up leaves on the heap is frozen out of the garbage collector (``intercept_gc_freeze``).

Every collection of CPython's oldest generation walks every object alive: mitmproxy's modules,
ours, the compiled policies. None of them becomes garbage while the proxy runs, yet under
load those walks took about 3% of mitmdump's CPU (bench/gc_cost.py); ``gc.freeze()`` moves
them to a generation the collector never visits, and the share fell to 1.9%.

What a freeze can cost: an object frozen stays frozen, so a reference cycle among frozen
objects that later becomes garbage is never collected (objects without cycles are still freed
at once by reference counting). The freeze is taken once running, when no flow exists yet,
and again after each policy change, first thawing and collecting everything, so a replaced
policy is collected then; what can stay behind is the cyclic garbage of flows alive at the
moment of a policy change. bench/bench_cost.py's soak rounds show the resident size.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("intercept")


class Heap:
    def __init__(self) -> None:
        self.enabled = True  # intercept_gc_freeze, read in configure
        self.running = False

    def freeze(self) -> None:
        """Thaw, collect, freeze again: what is alive now is left out of later collections."""
        if not (self.enabled and self.running):
            return
        began = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.debug(f"intercept: {gc.get_freeze_count()} objects frozen out of the garbage collector "
                  f"in {(time.perf_counter() - began) * 1000:.0f} ms")

    def configure(self, enabled: bool) -> None:
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            self.freeze()
        else:
            gc.unfreeze()  # collected from now on, as any object

    def start(self) -> None:
        self.running = True
        self.freeze()
