"""mitmproxy script for bench_cost.py's ``sqlite-freeze`` configuration: once the proxy runs,
collect, then move every object alive to the permanent generation (``gc.freeze()``), so later
collections no longer traverse start-up's objects (modules, the policy, mitmproxy itself)."""

import gc


class GcFreeze:
    def running(self) -> None:
        gc.collect()
        gc.freeze()


addons = [GcFreeze()]
