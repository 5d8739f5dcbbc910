"""Content types as clients read them.

Clients disagree. The Python SDK tests ``startswith("application/json")`` before
``startswith("text/event-stream")``; the TypeScript SDK 1.32 parses the media type; older
TypeScript SDKs test ``includes("text/event-stream")`` first, then ``includes("application/json")``.
``readings`` is every way some client reads a type. The proxy judges a body under each: a
JSON reading wins, since a body the strict parser accepts as JSON has no line an event-stream
reader takes for an event (every such line starts with an unquoted word, which JSON forbids).
"""

from __future__ import annotations

from functools import lru_cache

EVENT_STREAM = "text/event-stream"
JSON = "application/json"


def media_type(content_type: str | None) -> str:
    """``type/subtype`` in lower case, parameters dropped ("" when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(mtype: str) -> bool:
    return mtype == JSON or mtype.endswith("+json")


def _one(json_test: bool, sse_test: bool, *, sse_first: bool) -> str | None:
    if sse_first and sse_test:
        return "sse"
    if json_test:
        return "json"
    return "sse" if sse_test else None


@lru_cache(maxsize=256)  # a server answers in a handful of types: each read once, not per answer
def readings(content_type: str | None) -> frozenset[str]:
    """The ways clients read an answer of this type: a subset of {"json", "sse"}."""
    raw = (content_type or "").lower()
    mtype = media_type(raw)
    found = {
        _one(is_json(mtype), mtype == EVENT_STREAM, sse_first=False),  # the parsed media type
        _one(raw.lstrip().startswith(JSON), raw.lstrip().startswith(EVENT_STREAM), sse_first=False),
        _one(JSON in raw, EVENT_STREAM in raw, sse_first=True),
    }
    found.discard(None)
    return frozenset(found)  # type: ignore[arg-type]
