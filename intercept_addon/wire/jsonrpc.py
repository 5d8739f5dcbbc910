"""Strict JSON-RPC 2.0 for MCP: one parser whose reading no server can disagree with.

Rejected, because some real server or parser reads them differently (bypass vectors):
non-UTF-8 and BOM-prefixed bodies, NaN/Infinity, duplicate keys at any depth, keys in one
object that collide after NFKC + casefold (Go's case-insensitive binding), unknown envelope
members, nesting past a depth cap, ids that are not string or integer, a message mixing
``method`` with ``result``/``error``. Numbers stay exact (ints as ints, fractions as Decimal).
What was evaluated is forwarded re-serialised by ``dumps``, so the server parses exactly it.
"""

from __future__ import annotations

import decimal
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Literal

from intercept_addon.wire.text import shown

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020  # MCP 2026-07-28

ENVELOPE = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})
MAX_ID_LENGTH = 256
MAX_INT_DIGITS = 64  # far beyond any real argument; CPython refuses past 4300 digits anyway
MAX_ID_INT = 2**63 - 1

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")


class ProtocolError(Exception):
    """A message we refuse: answered locally with this JSON-RPC error, never forwarded."""

    def __init__(self, code: int, message: str, *, status: int = 400, id: str | int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.id = id


def fold(key: str) -> str:
    """The form under which lenient servers may match a key: NFKC, then casefold."""
    return unicodedata.normalize("NFKC", key).casefold()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    folded: set[str] = set()
    for key, value in pairs:
        if key in out:
            raise ProtocolError(PARSE_ERROR, f"duplicate key {shown(key)}")
        f = key if key.isascii() and key.islower() else fold(key)
        if f in folded:
            raise ProtocolError(PARSE_ERROR, f"ambiguous key {shown(key)} "
                                             "(collides with another key ignoring case/Unicode form)")
        folded.add(f)
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ProtocolError(PARSE_ERROR, f"{name} is not valid JSON")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(PARSE_ERROR, f"number with more than {MAX_INT_DIGITS} digits")
    return int(text)


def _decimal(text: str) -> Decimal:
    if len(text) > MAX_INT_DIGITS * 2:
        raise ProtocolError(PARSE_ERROR, "number too long")
    try:
        value = Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation: an exponent past Decimal's range (1e99999999999999999999)
        raise ProtocolError(PARSE_ERROR, "number out of range") from None
    if len(str(value)) > MAX_INT_DIGITS * 2:  # what dumps forwards must pass this parser too (found by the fuzzer)
        raise ProtocolError(PARSE_ERROR, "number too long")
    return value


def depth_ok(value: Any, max_depth: int) -> bool:
    """Is ``value`` nested at most ``max_depth`` levels deep (without recursing)?"""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def loads(body: bytes, *, max_depth: int = 64) -> Any:
    """Parse a JSON body strictly; raise ProtocolError(-32700) on anything doubtful."""
    if body.startswith(_BOMS):
        raise ProtocolError(PARSE_ERROR, "byte order mark: MCP messages must be UTF-8 without BOM")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(PARSE_ERROR, "body is not valid UTF-8") from None
    value = _plain(text, max_depth)
    return _strict(text, max_depth) if value is _DOUBT else value


def _strict(text: str, max_depth: int) -> Any:
    """The reference reading: every object and number through our hooks."""
    try:
        value = json.loads(
            text, object_pairs_hook=_object, parse_constant=_constant, parse_int=_int, parse_float=_decimal
        )
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError(PARSE_ERROR, f"nesting deeper than {max_depth} levels") from None
    except (ValueError, TypeError) as exc:
        raise ProtocolError(PARSE_ERROR, f"invalid JSON: {exc}") from None
    if not depth_ok(value, max_depth):
        raise ProtocolError(PARSE_ERROR, f"nesting deeper than {max_depth} levels")
    return value


_DOUBT = object()
# Where a key ends: its closing quote, JSON whitespace, the colon. Every key/value pair of the
# text has one such match of its own (a match ending at an earlier colon cannot reach past
# the key's opening quote), and text inside strings can only add matches, never hide one.
_KEY_END = re.compile(r'"[ \t\r\n]*:')
_INT_LIMIT = 10**MAX_INT_DIGITS


def _plain(text: str, max_depth: int) -> Any:
    """The value C json alone reads from ``text`` when that is provably what ``_strict`` reads,
    else _DOUBT. Proof: C json keeps the last of duplicate keys, so the tree holds fewer pairs
    than the text; the text holds at most as many pairs as ``_KEY_END`` matches. Equal counts
    leave no room for a duplicate. Then one walk checks what the hooks check: depth, folded
    keys, integer length; any float (a fraction, an exponent, NaN, Infinity) needs Decimal or a
    refusal, so it is left to ``_strict``, as is any text C json refuses."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return _DOUBT
    pairs = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return _DOUBT
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        if type(item) is dict:
            pairs += len(item)
            keys = "".join(item)  # no upper case anywhere in ASCII keys: each folds to itself
            if not (keys.isascii() and keys.islower()) and len(
                    {k.lower() for k in item} if keys.isascii() else {fold(k) for k in item}) < len(item):
                return _DOUBT  # ASCII folds as lower() does (NFKC leaves ASCII alone)
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float or (kind is int and not -_INT_LIMIT < child < _INT_LIMIT):
                return _DOUBT
    if type(value) is float or (type(value) is int and not -_INT_LIMIT < value < _INT_LIMIT):
        return _DOUBT
    return value if pairs == len(_KEY_END.findall(text)) else _DOUBT


def _encode(value: Any, out: list[str], sort_keys: bool = False) -> None:
    if isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, (int, Decimal)):
        out.append(str(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(sorted(value.items()) if sort_keys else value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _encode(v, out, sort_keys)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out, sort_keys)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


class _HasDecimal(Exception):
    pass


def _no_decimal(value: Any) -> Any:
    raise _HasDecimal


def _c_encoder(sort_keys: bool) -> Callable[[Any], str]:
    """The C encoder, built once: ``json.dumps`` with arguments builds a ``JSONEncoder`` and its
    C encoder on every call, which costs twice the encoding of a call. No circular check: every
    value encoded was parsed from JSON or built by this proxy (a cycle would still end, in a
    RecursionError). Without the C accelerator, the same encoder in Python."""
    if c_make_encoder is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                                default=_no_decimal, sort_keys=sort_keys, check_circular=False).encode
    encode = c_make_encoder(None, _no_decimal, encode_basestring, None, ":", ",", sort_keys, False, False)
    return lambda value: "".join(encode(value, 0))


_ENCODERS = {False: _c_encoder(False), True: _c_encoder(True)}


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON; exact numbers; lone surrogates rejected (not valid UTF-8);
    ``sort_keys`` for a canonical form.

    The C encoder writes the same text as ``_encode`` for everything but Decimal, whose exact
    digits it cannot emit; the rare message holding a fraction takes the pure-Python path."""
    try:
        text = _ENCODERS[sort_keys](value)
    except _HasDecimal:
        out: list[str] = []
        _encode(value, out, sort_keys)
        text = "".join(out)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(PARSE_ERROR, "string with an unpaired surrogate escape") from None


@dataclass(frozen=True, slots=True)
class Message:
    kind: Literal["request", "notification", "response"]
    id: str | int | None
    method: str | None
    params: dict[str, Any] | None
    body: dict[str, Any]


def valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_ID_INT <= value <= MAX_ID_INT
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH


_JS_RADIX = {"0x": 16, "0o": 8, "0b": 2}
_ID_NUMBERS = decimal.Context(prec=300, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)  # never overflows


def lenient_number(text: str) -> int | Decimal | None:
    """The number a lenient reader takes a string for, if any: Python's ``int()`` (surrounding
    whitespace, ``_`` separators, any Unicode digits; the Python SDK's id normalisation, and
    pydantic's lax ints) or JavaScript's ``Number()`` (whitespace, exponents, fractions,
    0x/0o/0b; the TypeScript SDK compares ``Number(id)``)."""
    try:
        return int(text)
    except ValueError:
        pass
    stripped = text.strip().strip("\ufeff").strip()  # JavaScript's whitespace includes the BOM
    radix = _JS_RADIX.get(stripped[:2].lower())
    if radix is not None:
        try:
            return int(stripped[2:], radix) if "_" not in stripped else None
        except ValueError:
            return None
    if not stripped or "_" in stripped or not stripped.isascii():
        return 0 if not stripped else None  # Number("") and Number(" ") are 0
    try:
        number = Decimal(stripped)
    except ArithmeticError:
        return None
    if not number.is_finite() or stripped.lower().lstrip("+-").startswith(("inf", "nan")):
        return None
    return _exact(number)


def _exact(number: Decimal) -> int | Decimal:
    """An integral value as int (ids are compared as ints), without building a huge one; so is
    a value JavaScript rounds to an integral double (3.0000000000000001 is 3 to it)."""
    if number.adjusted() <= 64 and number == number.to_integral_value():
        return int(number)
    as_double = float(number)
    if as_double.is_integer() and abs(as_double) < 2**53:
        return int(as_double)
    return number.normalize(_ID_NUMBERS)


def id_key(value: Any) -> Any:
    """What an answer's id is matched under: every spelling a lenient client takes for the same
    id (``3``, ``"3"``, ``3.0``, ``" 03 "``, ``"3e0"``) has one key, so an answer the client
    takes for request 3 is never read as someone else's by the proxy. None for an id no
    client matches (null, bool, objects)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return _exact(value) if value.is_finite() else None
    if isinstance(value, str):
        number = lenient_number(value) if len(value) <= MAX_ID_LENGTH else None
        return value if number is None else number
    return None


def classify(obj: Any) -> Message:
    """Validate one JSON-RPC message and say what it is; raise ProtocolError if it is not one."""
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_REQUEST, "a JSON-RPC message must be an object")
    raw_id = obj.get("id")
    msg_id = raw_id if valid_id(raw_id) else None
    unknown = sorted(set(obj) - ENVELOPE)
    if unknown:
        raise ProtocolError(INVALID_REQUEST, f"unknown member {shown(unknown[0])} in a JSON-RPC message", id=msg_id)
    if obj.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, 'jsonrpc must be "2.0"', id=msg_id)
    if "id" in obj and not valid_id(raw_id):
        raise ProtocolError(INVALID_REQUEST, "id must be a string or an integer (not null, bool or fraction)")
    params = obj.get("params")
    if "params" in obj and not isinstance(params, dict):
        raise ProtocolError(INVALID_REQUEST, "params must be an object", id=msg_id)
    if "method" in obj:
        if "result" in obj or "error" in obj:
            raise ProtocolError(INVALID_REQUEST, "a message cannot have both method and result/error", id=msg_id)
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise ProtocolError(INVALID_REQUEST, "method must be a non-empty string", id=msg_id)
        kind: Literal["request", "notification"] = "request" if "id" in obj else "notification"
        return Message(kind, msg_id, method, params, obj)
    if ("result" in obj) == ("error" in obj):
        raise ProtocolError(INVALID_REQUEST, "a message needs a method, or exactly one of result and error", id=msg_id)
    if "params" in obj:
        raise ProtocolError(INVALID_REQUEST, "a response cannot have params", id=msg_id)
    if "id" not in obj and "result" in obj:
        raise ProtocolError(INVALID_REQUEST, "a result needs an id")
    return Message("response", msg_id, None, None, obj)


def looks_like_jsonrpc(value: Any) -> bool:
    """Does a parsed JSON value claim to be JSON-RPC (even under a case/Unicode variant key)?"""
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, dict) and any(fold(k) in ENVELOPE for k in item) for item in items)


def error_body(id: str | int | None, code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id, "error": error}
