"""A mitmproxy script for the proxy ``intercept-addon stdio`` starts: every request it forwards
gets the bridge's per-run secret header. The secret comes in the environment, which only this
user can read and which, unlike a file, nothing leaves behind when the wrapper is killed."""

from __future__ import annotations

import os

from mitmproxy import http

from intercept_addon.stdio.proxy import SECRET_ENV, SECRET_HEADER


class SecretHeader:
    def __init__(self) -> None:
        self.secret = os.environ.get(SECRET_ENV, "")

    def request(self, flow: http.HTTPFlow) -> None:
        if self.secret:  # set, not added: whatever the client sent under this name is replaced
            flow.request.headers[SECRET_HEADER] = self.secret


addons = [SecretHeader()]
