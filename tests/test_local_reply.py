"""local_response builds exactly what mitmproxy's Response.make builds, without its debug-mode
type checks (proxy/local_reply.py): every field, the serialised state, and the bytes mitmproxy
writes to the client."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.net.http import http1

from intercept_addon.proxy.local_reply import local_response

BODY = b'{"jsonrpc":"2.0","id":7,"error":{"code":-32001,"message":"INTERCEPT POLICY DENIED: no"}}'


def state(response: http.Response) -> dict:
    got = response.get_state()
    return {k: v for k, v in got.items() if not k.startswith("timestamp_")}


@pytest.mark.parametrize("status", [200, 400, 401, 403, 413, 415, 429, 500, 502, 599])
@pytest.mark.parametrize("body", [BODY, b"", "é \u2028".encode()])
@pytest.mark.parametrize("extra", [None, {"connection": "close"}])
def test_equals_response_make(status: int, body: bytes, extra: dict[str, str] | None) -> None:
    made = http.Response.make(status, body, {"content-type": "application/json", **(extra or {})})
    ours = local_response(status, body, extra)
    assert state(ours) == state(made)
    assert http1.assemble_response(ours) == http1.assemble_response(made)
    assert (ours.stream, ours.trailers, ours.http_version) == (made.stream, made.trailers, made.http_version)
    assert ours.timestamp_start is not None and ours.timestamp_end == ours.timestamp_start


def test_its_headers_stay_editable() -> None:
    """The 401 refusal adds WWW-Authenticate after building the response."""
    ours = local_response(401, BODY)
    ours.headers["www-authenticate"] = 'Bearer error="invalid_token"'
    assert ours.headers.fields[-1] == (b"www-authenticate", b'Bearer error="invalid_token"')
    assert ours.headers["content-length"] == str(len(BODY))
