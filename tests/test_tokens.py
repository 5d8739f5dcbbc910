"""JWT bearer tokens as the verified user's identity (proxy/tokens.py, jwks.py, token_keys.py).

Keys are generated here, tokens signed with PyJWT (forgeries by hand, as an attacker would),
and the JWKS is served by a real HTTP server on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from mitmproxy import exceptions
from mitmproxy.test import taddons

from intercept_addon.proxy import tokens
from intercept_addon.proxy.token_keys import KeyProblem, keys_from_jwks, load_jwks
from intercept_addon.proxy.tokens import TokenError, TokenVerifier

ISSUER = "https://issuer.test"
AUDIENCE = "mcp-proxy"
PRIVATE = {
    "RS256": rsa.generate_private_key(65537, 2048),
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate(),
}
ATTACKER = rsa.generate_private_key(65537, 2048)


class OptionsOnly:
    def load(self, loader: Any) -> None:
        tokens.declare(loader)


def jwt_options(**values: Any) -> Any:
    """mitmproxy's own options, declared by ``tokens.declare`` and set as ``--set`` would."""
    with taddons.context(OptionsOnly()) as tctx:
        tctx.options.update(**values)
        return tctx.options


def pem_file(tmp_path: Path, private: Any, name: str = "issuer.pem") -> str:
    path = tmp_path / name
    path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(path)


def verifier_for(tmp_path: Path, alg: str = "RS256", **options: Any) -> TokenVerifier:
    options = {"intercept_jwt_key": pem_file(tmp_path, PRIVATE[alg]), "intercept_jwt_issuer": ISSUER,
               "intercept_jwt_audience": AUDIENCE, **options}
    verifier = TokenVerifier.from_options(jwt_options(**options))
    assert verifier is not None
    return verifier


def claims(**changes: Any) -> dict[str, Any]:
    """Good claims; a change to None removes that claim."""
    now = int(time.time())
    base = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def bearer(alg: str = "RS256", key: Any = None, kid: str | None = None, **changes: Any) -> str:
    signing_key = PRIVATE[alg] if key is None else key
    token = jwt.encode(claims(**changes), signing_key, algorithm=alg, headers={"kid": kid} if kid else None)
    return f"Bearer {token}"


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def hs256_forged_with(secret: bytes, payload: dict[str, Any]) -> str:
    """An HS256 token whose HMAC secret is ``secret`` (PyJWT itself refuses to make one with a
    PEM public key as the secret, so the attacker's bytes are put together here)."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"Bearer {signing_input}.{b64(signature)}"


async def until(condition: Any, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def refused(verifier: TokenVerifier, authorization: str | None) -> str:
    with pytest.raises(TokenError) as caught:
        await verifier.verify(authorization)
    message = str(caught.value)
    if authorization and "." in authorization:  # never echoes the token or a part of it
        assert not any(len(part) > 8 and part in message for part in authorization.split(" ")[-1].split("."))
    return message


# --- valid tokens --------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_a_valid_token_gives_its_subject_and_claims(tmp_path, alg):
    verifier = verifier_for(tmp_path, alg)
    user = await verifier.verify(bearer(alg, groups=["eng", "ops"], tenant={"id": 7}))
    assert user.sub == "alice"
    assert user.claims["groups"] == ["eng", "ops"] and user.claims["tenant"] == {"id": 7}
    assert user.claims["iss"] == ISSUER


async def test_claims_are_read_only_json_as_mcp_arguments_are(tmp_path):
    verifier = verifier_for(tmp_path)
    user = await verifier.verify(bearer(groups=["eng"], tenant={"id": 7, "tags": ["a"]}, ratio=0.1))
    groups, tenant = user.claims["groups"], user.claims["tenant"]
    assert isinstance(groups, list) and isinstance(tenant, dict)  # the policy conditions read them so
    assert user.claims["ratio"] == Decimal("0.1")  # exact, as arguments are
    for change in (lambda: groups.append("admin"), lambda: groups.__setitem__(0, "admin"),
                   lambda: tenant.update(id=1), lambda: tenant["tags"].extend(["b"]),
                   lambda: user.claims.__setitem__("sub", "root"), lambda: user.claims.pop("sub")):
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert user.claims["groups"] == ["eng"] and user.claims["sub"] == "alice"
    assert json.loads(json.dumps(user.claims, default=str))["tenant"] == {"id": 7, "tags": ["a"]}
    assert copy.deepcopy(user.claims) == user.claims


async def test_expiry_within_the_leeway_is_accepted(tmp_path):
    verifier = verifier_for(tmp_path, intercept_jwt_leeway=30)
    assert (await verifier.verify(bearer(exp=int(time.time()) - 10))).sub == "alice"
    assert "expired" in await refused(verifier, bearer(exp=int(time.time()) - 40))


# --- refused tokens ------------------------------------------------------------------------

REFUSALS = {
    "wrong key": (lambda: bearer(key=ATTACKER), "bad signature"),
    "alg none": (lambda: "Bearer " + jwt.encode(claims(), None, algorithm="none"), 'algorithm "none"'),
    "expired": (lambda: bearer(exp=int(time.time()) - 3600), "token expired"),
    "not yet valid (nbf)": (lambda: bearer(nbf=int(time.time()) + 3600), "not valid yet"),
    "issued in the future": (lambda: bearer(iat=int(time.time()) + 3600), "not valid yet"),
    "wrong issuer": (lambda: bearer(iss="https://evil.test"), 'wrong issuer: "https://evil.test"'),
    "no issuer": (lambda: bearer(iss=None), "wrong issuer: none"),
    "wrong audience": (lambda: bearer(aud="other-service"), 'wrong audience: the token is not for "mcp-proxy"'),
    "no audience": (lambda: bearer(aud=None), "no aud claim"),
    "no expiry": (lambda: bearer(exp=None), "no exp claim"),
    "no subject": (lambda: bearer(sub=None), "no sub claim"),
    "subject with a newline": (lambda: bearer(sub="alice\nadmin"), "sub claim must be"),
    "subject not a string": (lambda: bearer(sub=42), "Subject must be a string"),
    "expiry not a number": (lambda: bearer(exp="tomorrow"), "exp claim is not a time"),
    "HS256 with the RSA public key as secret": (
        lambda: hs256_forged_with(PRIVATE["RS256"].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), claims()),
        'algorithm "HS256"'),
    "unsigned header": (lambda: "Bearer " + b64(b'{"alg":"RS256"}') + "." + b64(json.dumps(claims()).encode()) + ".",
                        "bad signature"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_bad_token_is_refused_with_a_reason(tmp_path, case):
    make, reason = REFUSALS[case]
    assert reason in await refused(verifier_for(tmp_path), make())


async def test_duplicate_claims_are_refused_not_read_last_wins(tmp_path):
    payload = json.dumps(claims())[:-1] + ', "sub": "root"}'  # signed by the issuer, read two ways
    token = jwt.api_jws.encode(payload.encode(), PRIVATE["RS256"], algorithm="RS256")
    assert 'duplicate key "sub"' in await refused(verifier_for(tmp_path), f"Bearer {token}")


async def test_the_wrong_issuer_is_shown_escaped(tmp_path):
    message = await refused(verifier_for(tmp_path), bearer(iss="evil\n2026 allow forged\x1b[31m"))
    assert "\n" not in message and "\x1b" not in message
    assert '"evil\\n2026 allow forged\\u001b[31m"' in message


async def test_a_key_verifies_only_its_own_algorithms(tmp_path):
    """Both algorithms are accepted, but an Ed25519 key never verifies an RS256 token."""
    verifier = verifier_for(tmp_path, "EdDSA", intercept_jwt_algorithms="RS256,EdDSA")
    assert "no key verifies RS256" in await refused(verifier, bearer("RS256"))


async def test_a_token_with_aud_is_refused_when_no_audience_is_configured(tmp_path):
    verifier = verifier_for(tmp_path, intercept_jwt_audience="")
    assert "intercept_jwt_audience is not set" in await refused(verifier, bearer())
    assert (await verifier.verify(bearer(aud=None))).sub == "alice"


@pytest.mark.parametrize("authorization, reason", [
    (None, "no bearer token"),
    ("", "no bearer token"),
    ("Basic YWxpY2U6cHc=", "not a Bearer token"),
    ("Bearer", "no bearer token after"),
    ("Bearer   ", "no bearer token after"),
    ("Bearer not-a-jwt", "malformed token"),
    ("Bearer a.b.c", "malformed token"),
    ("Bearer " + "a" * 20000, "longer than"),
])
async def test_a_missing_or_malformed_header_is_refused(tmp_path, authorization, reason):
    assert reason in await refused(verifier_for(tmp_path), authorization)


async def test_two_authorization_headers_joined_are_refused(tmp_path):
    good = bearer()
    assert "malformed token" in await refused(verifier_for(tmp_path), f"{good}, {bearer(sub='bob')}")


async def test_the_bearer_scheme_is_case_insensitive(tmp_path):
    assert (await verifier_for(tmp_path).verify("bearer " + bearer().split(" ")[1])).sub == "alice"


# --- secrets and configuration -------------------------------------------------------------

async def test_hs256_with_a_secret_file(tmp_path):
    secret = uuid.uuid4().hex.encode() * 2  # 64 bytes
    (tmp_path / "hs.secret").write_bytes(secret + b"\n")
    verifier = TokenVerifier.from_options(jwt_options(
        intercept_jwt_key=f"secret:{tmp_path / 'hs.secret'}", intercept_jwt_algorithms="HS256"))
    assert verifier is not None
    token = jwt.encode(claims(aud=None), secret, algorithm="HS256")
    assert (await verifier.verify(f"Bearer {token}")).sub == "alice"
    wrong = jwt.encode(claims(aud=None), secret[::-1], algorithm="HS256")
    assert "bad signature" in await refused(verifier, f"Bearer {wrong}")
    assert 'algorithm "RS256"' in await refused(verifier, bearer(aud=None))


def test_nothing_configured_means_no_verifier():
    assert TokenVerifier.from_options(jwt_options()) is None


@pytest.mark.parametrize("change, reason", [
    ({"intercept_jwt_algorithms": "RS256,none"}, "'none'"),
    ({"intercept_jwt_algorithms": "RS256,XS999"}, "unknown XS999"),
    ({"intercept_jwt_algorithms": "RS256,HS256"}, "never with a public key"),
    ({"intercept_jwt_algorithms": "ES256"}, "an RSA key (2048 bits) verifies"),
    ({"intercept_jwt_jwks_url": "https://issuer.test/jwks"}, "not both"),
    ({"intercept_jwt_leeway": 3600}, "intercept_jwt_leeway"),
    ({"intercept_jwt_key": "/nonexistent/key.pem"}, "cannot read"),
    ({"intercept_jwt_key": "private"}, "private key"),
    ({"intercept_jwt_key": "garbage"}, "not a PEM public key"),
    ({"intercept_jwt_key": "short", "intercept_jwt_algorithms": "HS256"}, "HS256 needs at least 32"),
    ({"intercept_jwt_key": "weak"}, "at least 2048 needed"),
    ({"intercept_jwt_key": "secret", "intercept_jwt_algorithms": "RS256"}, "HS256/HS384/HS512 only"),
    ({"intercept_jwt_key": "", "intercept_jwt_issuer": ISSUER}, "nothing verifies tokens"),
    ({"intercept_jwt_key": "", "intercept_jwt_jwks_url": "http://issuer.test/jwks"}, "https://"),
    ({"intercept_jwt_key": "", "intercept_jwt_jwks_url": "https://issuer.test/jwks",
      "intercept_jwt_algorithms": "RS256,HS256"}, "never with a published key set"),
])
def test_a_bad_configuration_is_refused(tmp_path, change, reason):
    files = {
        "private": PRIVATE["RS256"].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()),
        "garbage": b"not a key\n",
        "short": b"only-sixteen-byt\n",
        "weak": rsa.generate_private_key(65537, 1024).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "secret": b"s" * 64,
    }
    options = {"intercept_jwt_key": pem_file(tmp_path, PRIVATE["RS256"]), **change}
    if options["intercept_jwt_key"] in files:
        name = options["intercept_jwt_key"]
        (tmp_path / name).write_bytes(files[name])
        options["intercept_jwt_key"] = ("secret:" if name in ("short", "secret") else "") + str(tmp_path / name)
    with pytest.raises(exceptions.OptionsError) as caught:
        TokenVerifier.from_options(jwt_options(**options))
    assert reason in str(caught.value)


# --- the verified-token cache --------------------------------------------------------------

async def test_a_cached_token_still_expires(tmp_path):
    verifier = verifier_for(tmp_path, intercept_jwt_leeway=0)
    exp = int(time.time()) + 2
    token = bearer(exp=exp)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # answered from the cache
    await asyncio.sleep(exp - time.time() + 0.05)
    assert "expired" in await refused(verifier, token)


async def test_the_cache_is_bounded(tmp_path):
    verifier = TokenVerifier(verifier_for(tmp_path).keys, algorithms=frozenset({"RS256"}), issuer=None,
                             audience=AUDIENCE, leeway=0, cache_size=3)
    tokens_ = [bearer(sub=f"user{i}") for i in range(5)]
    users = [await verifier.verify(t) for t in tokens_]
    assert len(verifier._cache) == 3
    assert await verifier.verify(tokens_[4]) is users[4]  # still cached
    assert await verifier.verify(tokens_[0]) is not users[0]  # evicted, verified again


# --- the issuer's JWKS over HTTP -----------------------------------------------------------

def jwk(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = private.public_key()
    algorithm = {rsa.RSAPublicKey: jwt.algorithms.RSAAlgorithm, ec.EllipticCurvePublicKey: jwt.algorithms.ECAlgorithm}
    to_jwk = next((a for t, a in algorithm.items() if isinstance(public, t)), jwt.algorithms.OKPAlgorithm).to_jwk
    return {**to_jwk(public, as_dict=True), "kid": kid, **extra}


class JwksServer:
    """The issuer's JWKS endpoint on 127.0.0.1, in a thread: a document, a delay, a status."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.document: dict[str, Any] = {"keys": list(keys)}
        self.status = 200
        self.delay = 0.0
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                time.sleep(server.delay)
                body = json.dumps(server.document).encode()
                self.send_response(server.status)
                if 300 <= server.status < 400:
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def jwks_verifier(server: JwksServer, **timing: float) -> TokenVerifier:
    verifier = TokenVerifier.from_options(
        jwt_options(intercept_jwt_jwks_url=server.url, intercept_jwt_issuer=ISSUER, intercept_jwt_audience=AUDIENCE),
        **{"refetch_seconds": 0.5, **timing})
    assert verifier is not None
    return verifier


async def test_a_rotated_key_is_fetched_once(tmp_path):
    new_key = ec.generate_private_key(ec.SECP256R1())
    with JwksServer(jwk(PRIVATE["RS256"], "k1")) as server:
        verifier = jwks_verifier(server)
        await verifier.start()
        try:
            assert server.hits == 1
            assert (await verifier.verify(bearer(kid="k1"))).sub == "alice"
            server.document["keys"].append(jwk(new_key, "k2"))  # the issuer rotates
            await asyncio.sleep(0.6)  # past the refetch interval
            rotated = bearer("ES256", key=new_key, kid="k2")
            assert (await verifier.verify(rotated)).sub == "alice"
            assert server.hits == 2  # one refetch for the new kid
            await verifier.verify(rotated)
            await verifier.verify(bearer(kid="k1"))
            assert server.hits == 2
        finally:
            await verifier.close()


async def test_a_flood_of_unknown_kids_refetches_at_most_once_per_interval():
    with JwksServer(jwk(PRIVATE["RS256"], "k1")) as server:
        verifier = jwks_verifier(server, refetch_seconds=1.0)
        await verifier.start()
        try:
            await asyncio.sleep(1.05)
            forged = [bearer(key=ATTACKER, kid=f"forged-{i}") for i in range(200)]
            started = time.monotonic()
            results = await asyncio.gather(*(verifier.verify(t) for t in forged), return_exceptions=True)
            for token in forged[:100]:  # and one after the other, within the interval
                await refused(verifier, token)
            assert time.monotonic() - started < 1.0, "the flood outlasted the interval: the count says nothing"
            assert all(isinstance(r, TokenError) and "unknown key" in str(r) for r in results)
            assert server.hits == 2  # the start, and one refetch for the whole flood
            await asyncio.sleep(1.05)
            await asyncio.gather(*(verifier.verify(t) for t in forged), return_exceptions=True)
            assert server.hits == 3
            assert (await verifier.verify(bearer(kid="k1"))).sub == "alice"
        finally:
            await verifier.close()


async def test_a_slow_jwks_fetch_does_not_block_the_event_loop():
    with JwksServer(jwk(PRIVATE["RS256"], "k1")) as server:
        server.delay = 1.0
        verifier = jwks_verifier(server, timeout_seconds=3.0)
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        try:
            waiting = asyncio.create_task(verifier.verify(bearer(kid="k1")))  # waits for the same fetch
            await verifier.start()
            assert (await waiting).sub == "alice"
        finally:
            ticking.cancel()
            await verifier.close()
        assert time.monotonic() - started >= 0.9  # the fetch did take the server's second
        assert server.hits == 1
        assert len(gaps) > 50 and max(gaps) < 0.1, f"the loop stalled for {max(gaps):.3f} s"


async def test_an_unreachable_jwks_fails_closed_until_it_loads(caplog):
    with JwksServer(jwk(PRIVATE["RS256"], "k1")) as server:
        server.status = 503
        verifier = jwks_verifier(server)
        with caplog.at_level(logging.WARNING):
            await verifier.start()
        try:
            assert any("could not be loaded" in r.message and r.levelno == logging.ERROR for r in caplog.records)
            assert "HTTP 503" in caplog.text
            assert "JWKS) could not be loaded" in await refused(verifier, bearer(kid="k1"))
            server.status = 200
            await asyncio.sleep(0.6)
            assert (await verifier.verify(bearer(kid="k1"))).sub == "alice"
        finally:
            await verifier.close()


async def test_a_withdrawn_key_stops_verifying_even_cached_tokens():
    with JwksServer(jwk(PRIVATE["RS256"], "k1")) as server:
        verifier = jwks_verifier(server, refresh_seconds=0.3, refetch_seconds=0.2)
        await verifier.start()
        try:
            token = bearer(kid="k1")
            assert (await verifier.verify(token)).sub == "alice"  # now cached
            server.document = {"keys": [jwk(ec.generate_private_key(ec.SECP256R1()), "k2")]}
            await until(lambda: verifier.keys.generation == 2)  # the background refresh saw it
            assert server.hits == 2
            assert "unknown key" in await refused(verifier, token)
        finally:
            await verifier.close()
        hits = server.hits
        await asyncio.sleep(0.8)
        assert server.hits == hits  # close() stopped the refresh


async def test_a_failed_refresh_keeps_the_last_good_keys():
    with JwksServer(jwk(PRIVATE["RS256"], "k1")) as server:
        verifier = jwks_verifier(server, refresh_seconds=0.3, refetch_seconds=0.2)
        await verifier.start()
        try:
            server.status = 500
            await until(lambda: server.hits >= 3)  # the refresh, then a retry
            assert (await verifier.verify(bearer(kid="k1"))).sub == "alice"
        finally:
            await verifier.close()


def test_redirects_are_not_followed():
    with JwksServer(jwk(PRIVATE["RS256"], "k1")) as server:
        server.status = 302
        with pytest.raises(KeyProblem, match="redirects are not followed"):
            load_jwks(server.url, frozenset({"RS256"}), timeout=3.0)


def test_unusable_jwks_entries_are_skipped_with_a_reason():
    good = jwk(PRIVATE["RS256"], "good")
    weak = jwk(rsa.generate_private_key(65537, 1024), "weak")
    private = {**jwt.algorithms.RSAAlgorithm.to_jwk(PRIVATE["RS256"], as_dict=True), "kid": "private",
               "key_ops": ["verify"]}
    document = {"keys": [
        good, weak, private, {**good, "kid": "enc", "use": "enc"},
        {"kty": "oct", "k": b64(b"s" * 32), "kid": "secret"}, {**good, "kid": "pinned", "alg": "PS256"},
        {**good, "kid": "bad-ops", "key_ops": 5}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "junk"},
        "not an object",
    ]}
    keys, skipped = keys_from_jwks(document, frozenset({"RS256", "PS256"}))
    assert {k.kid: k.algorithms for k in keys} == {"good": {"RS256", "PS256"}, "pinned": {"PS256"}}
    assert len(skipped) == 7
    assert any('"weak"' in s and "2048" in s for s in skipped)
    assert any('"private"' in s and "private key material" in s for s in skipped)
    with pytest.raises(KeyProblem, match="not a JWK Set"):
        keys_from_jwks({"keys": "nope"}, frozenset({"RS256"}))


async def test_a_token_without_kid_needs_exactly_one_fitting_key():
    with JwksServer(jwk(PRIVATE["RS256"], "k1"), jwk(PRIVATE["ES256"], "k2")) as server:
        verifier = jwks_verifier(server)
        await verifier.start()
        try:
            assert (await verifier.verify(bearer("ES256"))).sub == "alice"  # one EC key fits
            server.document["keys"].append(jwk(rsa.generate_private_key(65537, 2048), "k3"))
            await asyncio.sleep(0.6)
            await refused(verifier, bearer(key=ATTACKER, kid="unknown"))  # refetches: now two RSA keys
            assert "must name one by kid" in await refused(verifier, bearer())
        finally:
            await verifier.close()
