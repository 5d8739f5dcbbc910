"""The responses the proxy answers itself (denials, refusals, 502s), built without mitmproxy's
debug-mode type checks.

``http.Response.make`` builds a ``ResponseData`` dataclass whose ``__post_init__`` checks every
field against its type annotation while ``__debug__`` is on (it always is: mitmdump does not run
under ``-O``). That check is 90% of building the response: 120 µs of a denial against 9 µs here
on the machine of issue #18. The values below have the checked types by construction;
tests/test_local_reply.py proves the result equal to ``Response.make``'s, field by field, so a
mitmproxy that changes either shape fails that test instead of answering differently.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from mitmproxy import http
from mitmproxy.net.http import status_codes

from intercept_addon.wire.media import JSON

CONTENT_TYPE = (b"content-type", JSON.encode())


def local_response(status: int, content: bytes, headers: Mapping[str, str] | None = None) -> http.Response:
    """What ``http.Response.make(status, content, {"content-type": JSON, **headers})`` makes."""
    fields = [CONTENT_TYPE]
    fields += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    fields.append((b"content-length", str(len(content)).encode()))  # make() adds it when it sets the content
    now = time.time()
    data = object.__new__(http.ResponseData)  # no __post_init__: the types are ours
    vars(data).update(http_version=b"HTTP/1.1", headers=http.Headers(fields), content=content, trailers=None,
                      timestamp_start=now, timestamp_end=now, status_code=status,
                      reason=status_codes.RESPONSES.get(status, "").encode())
    response = object.__new__(http.Response)  # Response.__init__ only builds the data above
    response.data = data
    return response
