"""Test-only mitmproxy script, loaded after intercept_addon.py: ``GET /__local_process`` is
answered by the proxy itself with the LocalProcess it found for that client connection (JSON,
``null`` if none), resolved from the request hook and forgotten in ``client_disconnected``, as
the addon wires it."""

import dataclasses
import json

from mitmproxy import connection, http

from intercept_addon.proxy.local_process import LocalProcesses

PATH = "/__local_process"


class LocalProcessProbe:
    def __init__(self) -> None:
        self.processes = LocalProcesses()

    def client_disconnected(self, client: connection.Client) -> None:
        self.processes.forget(client)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "GET" or flow.request.path != PATH:
            return
        found = await self.processes.resolve(flow.client_conn)
        body = None if found is None else {**dataclasses.asdict(found), "key": found.key}
        body = {"process": body, "connections": len(self.processes)}
        flow.response = http.Response.make(200, json.dumps(body), {"content-type": "application/json"})


addons = [LocalProcessProbe()]
