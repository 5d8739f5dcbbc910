"""How answers are read: loose ids as clients match them, content types as clients parse them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from intercept_addon.wire.jsonrpc import id_key
from intercept_addon.wire.media import media_type, readings

# Spellings the Python SDK (int(str)) or the TypeScript SDK (Number(id)) take for request 3.
SAME_AS_3 = [3, "3", " 3", "3 ", "\t3\n", "03", "+3", "0_3", "\u0663", "\uff13", "\u00a03", "\u30003", "\ufeff3",
             "3e0", "30e-1", "3.0", "3.", "0x3", "0b11", "0o3", "2.9999999999999999",
             Decimal("3.0"), Decimal("3e0"), Decimal("3.0000000000000001")]


@pytest.mark.parametrize("spelling", SAME_AS_3, ids=repr)
def test_every_spelling_a_client_takes_for_an_id_has_its_key(spelling):
    assert id_key(spelling) == id_key(3) == 3


@pytest.mark.parametrize("other", ["4", "abc", "3a", "0x", "Infinity", "NaN", Decimal("3.5"), "1e400"], ids=repr)
def test_other_ids_keep_their_own_key(other):
    assert id_key(other) != 3


@pytest.mark.parametrize("value", [None, True, False, {}, [], Decimal("NaN")], ids=repr)
def test_no_client_matches_these(value):
    assert id_key(value) is None


def test_huge_exponents_are_keyed_without_building_huge_numbers():
    assert id_key("1e999999999") == id_key(Decimal("1e999999999")) != id_key("1e999999998")


@pytest.mark.parametrize(("ctype", "found"), [
    ("application/json", {"json"}), ("application/json; charset=utf-8", {"json"}), ("Application/JSON", {"json"}),
    ("application/vnd.x+json", {"json"}), ("text/event-stream", {"sse"}), ("text/event-stream; charset=utf-8", {"sse"}),
    # Python and parsed types: JSON; an includes() test of event-stream first (older TS SDKs): a stream.
    ('application/json; profile="text/event-stream"', {"json", "sse"}), ("application/json;text/event-stream", {"json", "sse"}),
    ('text/event-stream; x="application/json"', {"sse"}),  # every client reads a stream
    ("application/jsonx", {"json"}), ("x/y; a=application/json", {"json"}),
    ("text/plain", set()), (None, set()), ("", set()),
])
def test_readings_are_every_way_a_client_reads_the_type(ctype, found):
    assert readings(ctype) == found


def test_media_type_drops_parameters():
    assert media_type(' Text/Event-Stream ; charset="utf-8"') == "text/event-stream"
