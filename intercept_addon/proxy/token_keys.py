"""The keys that verify JWT bearer tokens, and which algorithms each may verify.

A key verifies only its own family of algorithms (an RSA key RS*/PS*, a P-256 key ES256, an
Ed25519 key EdDSA, a shared secret HS*), intersected with the configured list: a token whose
header names another algorithm is refused before any signature check, so an HS256 token
"signed" with an RSA public key as the secret never reaches an HMAC. Keys come from a local
file (``load_key_file``) or the issuer's JWKS (``load_jwks``, blocking: run it in a thread).
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509 import load_pem_x509_certificate

from intercept_addon.wire.text import shown

SECRET_PREFIX = "secret:"
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"secp256r1": frozenset({"ES256"}), "secp384r1": frozenset({"ES384"}),
                 "secp521r1": frozenset({"ES512", "ES521"}), "secp256k1": frozenset({"ES256K"})}
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 3.2: at least the hash size
KNOWN_ALGORITHMS = frozenset(jwt.algorithms.get_default_algorithms()) - {"none"}
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 512 * 1024
MAX_JWKS_KEYS = 50


class KeyProblem(ValueError):
    """A key file or JWKS that cannot be used; the message says why (for the operator)."""


@dataclass(frozen=True, slots=True)
class Key:
    kid: str | None
    key: Any  # a cryptography public key, or the shared secret's bytes
    algorithms: frozenset[str]  # what it may verify: its family, within the configured list


def parse_algorithms(text: str) -> frozenset[str]:
    names = frozenset(a.strip() for a in text.split(",") if a.strip())
    if "none" in {n.lower() for n in names}:
        raise KeyProblem("intercept_jwt_algorithms: 'none' (unsigned tokens) is never accepted")
    unknown = sorted(names - KNOWN_ALGORITHMS)
    if unknown or not names:
        raise KeyProblem(f"intercept_jwt_algorithms: unknown {', '.join(unknown) or 'empty list'}; "
                        f"use some of {', '.join(sorted(KNOWN_ALGORITHMS))}")
    return names


def family(key: Any) -> frozenset[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EC_ALGORITHMS.get(key.curve.name, frozenset())
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    if isinstance(key, bytes):
        return frozenset(HMAC_MIN_BYTES)
    return frozenset()


def _describe(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA key ({key.key_size} bits)"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC key on {key.curve.name}"
    return "a secret" if isinstance(key, bytes) else f"a {type(key).__name__}"


def _bound(kid: str | None, key: Any, allowed: frozenset[str], where: str) -> Key:
    """``key`` bound to the configured algorithms it can verify; raises KeyProblem if none or weak."""
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise KeyProblem(f"{where}: an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} needed)")
    algorithms = family(key) & allowed
    if not algorithms:
        fits = ", ".join(sorted(family(key))) or "nothing this proxy supports"
        raise KeyProblem(f"{where}: {_describe(key)} verifies {fits}; none of them is in intercept_jwt_algorithms")
    return Key(kid, key, algorithms)


def load_key_file(spec: str, allowed: frozenset[str]) -> Key:
    """``intercept_jwt_key``: a PEM public key or certificate file, or ``secret:<file>``."""
    is_secret = spec.startswith(SECRET_PREFIX)
    path = Path(spec.removeprefix(SECRET_PREFIX)).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(f"intercept_jwt_key: cannot read {path}: {exc.strerror}") from None
    if is_secret:
        return _secret(data.rstrip(b"\r\n"), allowed, path)
    if HMAC_MIN_BYTES.keys() & allowed:
        raise KeyProblem("intercept_jwt_algorithms: HS256/HS384/HS512 verify with a shared secret only "
                        "(intercept_jwt_key=secret:<file>), never with a public key")
    if b"PRIVATE KEY" in data:
        raise KeyProblem(f"intercept_jwt_key: {path} holds a private key; give the proxy the public key only")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyProblem(f"intercept_jwt_key: {path} is not a PEM public key or certificate "
                        f"(for an HMAC secret write secret:{path})") from None
    return _bound(None, key, allowed, f"intercept_jwt_key {path}")


def _secret(secret: bytes, allowed: frozenset[str], path: Path) -> Key:
    wrong = sorted(allowed - HMAC_MIN_BYTES.keys())
    if wrong:
        raise KeyProblem(f"intercept_jwt_key=secret:... verifies HS256/HS384/HS512 only, but intercept_jwt_algorithms "
                        f"has {', '.join(wrong)}: set it to HS256 (or HS384, HS512)")
    short = [a for a in sorted(allowed) if len(secret) < HMAC_MIN_BYTES[a]]
    if short:
        raise KeyProblem(f"intercept_jwt_key: the secret in {path} is {len(secret)} bytes; "
                        f"{short[0]} needs at least {HMAC_MIN_BYTES[short[0]]}")
    return Key(None, secret, allowed)


def _jwk(entry: Any, allowed: frozenset[str]) -> Key:
    if not isinstance(entry, dict):
        raise KeyProblem("not a JSON object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyProblem("kid is not a string")
    ops = entry.get("key_ops", ["verify"])
    if entry.get("use", "sig") != "sig" or not isinstance(ops, list) or "verify" not in ops:
        raise KeyProblem("not a signature key (use/key_ops)")
    if entry.get("kty") == "oct" or "d" in entry:
        raise KeyProblem("secret or private key material in a public key set")
    if not isinstance(entry.get("alg", ""), str):
        raise KeyProblem("alg is not a string")
    try:
        parsed = jwt.PyJWK(entry)
    except jwt.PyJWTError as exc:
        raise KeyProblem(shown(str(exc), 80)) from None
    key = _bound(kid, parsed.key, allowed, "key")
    if "alg" in entry:  # the issuer pinned this key to one algorithm
        key = Key(kid, key.key, key.algorithms & {entry["alg"]})
        if not key.algorithms:
            raise KeyProblem(f"its alg {shown(str(entry['alg']))} is not in intercept_jwt_algorithms")
    return key


def _name(entry: Any) -> str:
    kid = entry.get("kid") if isinstance(entry, dict) else None
    return f"kid {shown(kid)}" if isinstance(kid, str) else "a key without kid"


def keys_from_jwks(document: Any, allowed: frozenset[str]) -> tuple[tuple[Key, ...], list[str]]:
    """The usable keys of a JWK Set, and why each other one was skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyProblem('not a JWK Set (a JSON object with a "keys" array)')
    keys: list[Key] = []
    skipped: list[str] = []
    for entry in document["keys"][:MAX_JWKS_KEYS]:
        try:
            keys.append(_jwk(entry, allowed))
        except KeyProblem as exc:
            skipped.append(f"{_name(entry)}: {exc}")
        except (TypeError, ValueError) as exc:  # whatever else a hostile entry makes a parser say
            skipped.append(f"{_name(entry)}: {shown(str(exc), 80)}")
    if len(document["keys"]) > MAX_JWKS_KEYS:
        skipped.append(f"{len(document['keys']) - MAX_JWKS_KEYS} keys past the first {MAX_JWKS_KEYS}")
    return tuple(keys), skipped


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None  # urllib then raises HTTPError 3xx: the configured URL must be the key set itself


def _opener() -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()  # the system's CAs (an in-house issuer's CA) ...
    context.load_verify_locations(certifi.where())  # ... and mitmproxy's bundle, where there are none
    # ProxyHandler({}): HTTP(S)_PROXY is ignored, the proxy may be set to send through itself.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects(),
                                       urllib.request.HTTPSHandler(context=context))


def load_jwks(url: str, allowed: frozenset[str], timeout: float) -> tuple[tuple[Key, ...], list[str]]:
    """Fetch and parse the issuer's JWKS. Blocking (urllib): call it in a worker thread. The whole
    fetch ends within about ``timeout`` seconds, however slowly the server drips its answer."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "intercept-addon"})
    try:
        with _opener().open(request, timeout=timeout) as answer:
            body = bytearray()
            while chunk := answer.read1(65536):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise KeyProblem(f"larger than {MAX_JWKS_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise KeyProblem(f"not received within {timeout:g} s")
    except urllib.error.HTTPError as exc:
        moved = " (redirects are not followed: configure the final URL)" if 300 <= exc.code < 400 else ""
        raise KeyProblem(f"HTTP {exc.code}{moved}") from None
    except urllib.error.URLError as exc:
        raise KeyProblem(shown(str(exc.reason), 200)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, bad answers
        raise KeyProblem(shown(str(exc) or type(exc).__name__, 200)) from None
    try:
        document = json.loads(bytes(body))
    except (ValueError, RecursionError):  # RecursionError: a hostile answer nested past Python's stack
        raise KeyProblem("not JSON") from None
    return keys_from_jwks(document, allowed)
