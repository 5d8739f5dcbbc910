"""Verified users: the JWT bearer token in ``Authorization``, checked as a team gateway does.

Configured by ``intercept_jwt_jwks_url`` or ``intercept_jwt_key``; then every MCP request must
carry ``Authorization: Bearer <jwt>`` that verifies: a signature by a known key in an algorithm
that key and the configured list both allow (``none`` never), ``exp`` present and not past,
``nbf``/``iat`` not in the future (each with ``intercept_jwt_leeway``), ``iss`` equal to
``intercept_jwt_issuer`` when set, ``aud`` holding ``intercept_jwt_audience`` (a token with an
``aud`` is refused when none is set: it was minted for some other service), and a printable
``sub``. The claims are read with the strict JSON parser of MCP messages (no duplicate or
case-colliding keys, exact numbers) and exposed read-only as ``identity.sub`` and
``identity.claims.<name>``.

A verified token is remembered by its exact text until its expiry (plus leeway) or
CACHE_SECONDS, whichever comes first, in a bounded LRU that is emptied whenever the issuer's key
set changes: an agent's repeated token costs a dict lookup, not a signature check.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jwt
from mitmproxy import exceptions

from intercept_addon.proxy.jwks import RemoteKeys, StaticKeys, check_url
from intercept_addon.proxy.token_keys import Key, KeyProblem, load_key_file, parse_algorithms
from intercept_addon.wire import jsonrpc
from intercept_addon.wire.text import escaped, shown

DEFAULT_ALGORITHMS = "RS256,ES256,EdDSA"
DEFAULT_LEEWAY = 30
MAX_LEEWAY = 300
MAX_TOKEN_LENGTH = 16 * 1024
MAX_SUB_LENGTH = 256  # the subject names counters: keep keys small
MAX_CLAIM_DEPTH = 32
TIME_CLAIMS = ("exp", "nbf", "iat")
MAX_TIME = 2**53  # seconds: far past any real expiry, small enough for int() to be cheap
CACHE_SIZE = 4096
CACHE_SECONDS = 60.0


def declare(loader: Any) -> None:
    add = loader.add_option
    add("intercept_jwt_jwks_url", str, "",
        "Verify JWT bearer tokens with the issuer's JWKS at this https:// URL (http:// only on loopback).")
    add("intercept_jwt_key", str, "",
        "Verify JWT bearer tokens with a local key instead: a PEM public key or certificate file, "
        "or secret:<file> holding an HMAC secret (HS256/HS384/HS512).")
    add("intercept_jwt_issuer", str, "", "When set, a token's iss must equal it.")
    add("intercept_jwt_audience", str, "",
        "When set, a token's aud must include it; unset, a token carrying aud is refused.")
    add("intercept_jwt_algorithms", str, DEFAULT_ALGORITHMS,
        "Signature algorithms accepted, comma-separated ('none' never; HS* only with secret:<file>).")
    add("intercept_jwt_leeway", int, DEFAULT_LEEWAY, f"Clock skew allowed on exp/nbf/iat, seconds (0-{MAX_LEEWAY}).")


class ReadOnlyDict(dict[str, Any]):
    """A JSON object of verified claims: reads as a dict, refuses every change."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("verified claims are read-only")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore

    def __reduce__(self) -> Any:  # copy/deepcopy/pickle without __setitem__
        return type(self), (dict(self),)


class ReadOnlyList(list[Any]):
    """A JSON array of verified claims: reads as a list, refuses every change."""

    _refuse = ReadOnlyDict._refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse  # type: ignore
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse  # type: ignore

    def __reduce__(self) -> Any:
        return type(self), (list(self),)


def _read_only(value: Any) -> Any:
    if isinstance(value, dict):
        return ReadOnlyDict({k: _read_only(v) for k, v in value.items()})
    if isinstance(value, list):
        return ReadOnlyList(_read_only(v) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class VerifiedUser:
    sub: str
    claims: Mapping[str, Any]  # read-only; str, int, Decimal (fractions), bool, None, list, dict


class TokenError(Exception):
    """A token refused; the message says why, is safe to show the client and never holds the token."""


class _StrictJWT(jwt.PyJWT):
    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        """Claims read as MCP arguments are (PyJWT's documented extension point)."""
        try:
            claims = jsonrpc.loads(decoded["payload"], max_depth=MAX_CLAIM_DEPTH)
        except jsonrpc.ProtocolError as exc:
            raise jwt.DecodeError(f"the claims are not strict JSON: {exc.message}") from None
        if not isinstance(claims, dict):
            raise jwt.DecodeError("the claims are not a JSON object")
        for name in TIME_CLAIMS:
            value = claims.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | Decimal)
                                      or not 0 <= value < MAX_TIME):
                raise jwt.DecodeError(f"the {name} claim is not a time in seconds")
        return claims


def _said(exc: jwt.PyJWTError) -> str:
    """PyJWT's own message (fixed texts; a header value it may quote is escaped and cut)."""
    return escaped(str(exc)[:160])


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if not scheme:
        raise TokenError("no bearer token: send Authorization: Bearer <token>")
    if scheme.lower() != "bearer":
        raise TokenError("the Authorization header is not a Bearer token")
    token = token.strip()
    if not token:
        raise TokenError("no bearer token after 'Bearer'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"bearer token longer than {MAX_TOKEN_LENGTH} characters")
    return token


class TokenVerifier:
    def __init__(self, keys: StaticKeys | RemoteKeys, *, algorithms: frozenset[str], issuer: str | None,
                 audience: str | None, leeway: int, cache_size: int = CACHE_SIZE,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self.keys = keys
        self._algorithms = algorithms
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._jwt = _StrictJWT({"require": ["exp", "sub"], "enforce_minimum_key_length": True})
        self._cache: OrderedDict[str, tuple[VerifiedUser, float]] = OrderedDict()  # token -> (user, until)
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._generation = keys.generation

    @classmethod
    def from_options(cls, opts: Any, **timing: float) -> TokenVerifier | None:
        """None when no key is configured; OptionsError on a bad configuration. ``timing``:
        RemoteKeys' refresh_seconds, refetch_seconds, timeout_seconds (tests shorten them)."""
        url, spec = opts.intercept_jwt_jwks_url.strip(), opts.intercept_jwt_key.strip()
        if not url and not spec:
            for name in ("intercept_jwt_issuer", "intercept_jwt_audience"):
                if getattr(opts, name):
                    raise exceptions.OptionsError(f"{name} is set, but nothing verifies tokens: "
                                                  "set intercept_jwt_jwks_url or intercept_jwt_key")
            return None
        if url and spec:
            raise exceptions.OptionsError("set intercept_jwt_jwks_url or intercept_jwt_key, not both")
        if not 0 <= opts.intercept_jwt_leeway <= MAX_LEEWAY:
            raise exceptions.OptionsError(f"intercept_jwt_leeway must be between 0 and {MAX_LEEWAY} seconds")
        try:
            algorithms = parse_algorithms(opts.intercept_jwt_algorithms)
            if spec:
                keys: StaticKeys | RemoteKeys = StaticKeys(load_key_file(spec, algorithms))
            else:
                check_url(url)
                if algorithms & {"HS256", "HS384", "HS512"}:
                    raise KeyProblem("intercept_jwt_algorithms: HS* verify with a shared secret "
                                     "(intercept_jwt_key=secret:<file>), never with a published key set")
                keys = RemoteKeys(url, algorithms, **timing)
        except KeyProblem as exc:
            raise exceptions.OptionsError(str(exc)) from None
        return cls(keys, algorithms=algorithms, issuer=opts.intercept_jwt_issuer or None,
                   audience=opts.intercept_jwt_audience or None, leeway=opts.intercept_jwt_leeway)

    async def start(self) -> None:
        """The first JWKS fetch and the background refresh (nothing for a local key)."""
        await self.keys.start()

    async def close(self) -> None:
        await self.keys.close()

    async def verify(self, authorization: str | None) -> VerifiedUser:
        """The user an ``Authorization`` header value proves; raises TokenError."""
        token = _bearer(authorization)
        if self.keys.generation != self._generation:  # a key may have been withdrawn
            self._cache.clear()
            self._generation = self.keys.generation
        cached = self._cache.get(token)
        if cached is not None:
            if time.time() < cached[1]:
                self._cache.move_to_end(token)
                return cached[0]
            del self._cache[token]
        user, until = await self._verify_signed(token)
        self._cache[token] = (user, until)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return user

    async def _verify_signed(self, token: str) -> tuple[VerifiedUser, float]:
        try:  # the header segment alone (its base64 check is per character); decode reads it all again
            header = jwt.get_unverified_header(token.partition(".")[0] + "..")
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {_said(exc)}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            named = f"algorithm {shown(alg, 20)}" if isinstance(alg, str) else "no algorithm"
            raise TokenError(f"the token names {named}; accepted: {', '.join(sorted(self._algorithms))}")
        key = await self._key(header.get("kid"), alg)
        try:  # no await from here on: the key cannot change under the check
            claims = self._jwt.decode(token, key.key, algorithms=[alg], audience=self._audience, leeway=self._leeway)
        except jwt.PyJWTError as exc:
            raise TokenError(self._explain(exc)) from None
        iss = claims.get("iss")
        if self._issuer is not None and iss != self._issuer:
            got = shown(iss) if isinstance(iss, str) else "none"
            raise TokenError(f"wrong issuer: {got}, expected {shown(self._issuer)}")
        sub = claims["sub"]  # required, and a string (PyJWT checks both)
        if not sub or len(sub) > MAX_SUB_LENGTH or not sub.isprintable():
            raise TokenError(f"the sub claim must be 1 to {MAX_SUB_LENGTH} printable characters")
        until = min(float(claims["exp"]) + self._leeway, time.time() + self._cache_seconds)
        return VerifiedUser(sub, _read_only(claims)), until

    async def _key(self, kid: str | None, alg: str) -> Key:
        keys = self.keys.matching(kid)
        if not keys and await self.keys.refetch():  # rate-limited: a forged kid costs the issuer little
            keys = self.keys.matching(kid)
        if not keys:
            if not self.keys.loaded:
                raise TokenError("the issuer's keys (JWKS) could not be loaded: no token can be verified now")
            raise TokenError(f"unknown key: kid {shown(kid, 40)}" if kid is not None else "unknown key: no kid")
        fit = [k for k in keys if alg in k.algorithms]
        if len(fit) != 1:
            raise TokenError(f"no key verifies {alg} tokens" + (f" with kid {shown(kid, 40)}" if kid else "")
                             if not fit else "several keys could verify this token: it must name one by kid")
        return fit[0]

    def _explain(self, exc: jwt.PyJWTError) -> str:
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "token expired"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "token not valid yet (nbf or iat in the future)"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "bad signature"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"the token has no {exc.claim} claim"
        if isinstance(exc, jwt.InvalidAudienceError):
            if self._audience is None:
                return "the token is for an audience (aud) and intercept_jwt_audience is not set"
            return f"wrong audience: the token is not for {shown(self._audience)}"
        if isinstance(exc, jwt.DecodeError):
            return f"malformed token: {_said(exc)}"
        return f"invalid token: {_said(exc)}"
