"""Test-only mitmproxy script, loaded after intercept_addon.py: ``GET /__intercept_pending`` is
answered by the proxy itself with the sizes of the intercept addon's per-flow and per-stream
tables and the number of live Python container objects, so a test can check that nothing is left
waiting once every answer has arrived."""

import gc
import json

from mitmproxy import ctx, http

PATH = "/__intercept_pending"


class PendingProbe:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "GET" or flow.request.path != PATH:
            return
        addon = ctx.master.addons.get("intercept_addon")
        gc.collect()  # count what is alive, not garbage waiting for the collector
        body = {**addon.owed(), "objects": len(gc.get_objects())}  # live container objects too
        flow.response = http.Response.make(200, json.dumps(body), {"content-type": "application/json"})


addons = [PendingProbe()]
