"""mitmproxy script for bench_cost.py's ``bare-freeze`` configuration (what intercept_gc_freeze
does, in a mitmdump without the addon): once the proxy runs,
collect, then move every object alive to the permanent generation (``gc.freeze()``), so later
collections no longer traverse start-up's objects (modules, the policy, mitmproxy itself)."""

import gc


class GcFreeze:
    def running(self) -> None:
        gc.collect()
        gc.freeze()


addons = [GcFreeze()]
