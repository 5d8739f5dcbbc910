"""Benchmark TokenVerifier.verify per algorithm, cold and cached (not a test).

    .venv/bin/python bench/bench_tokens.py [--calls 2000]

Per algorithm (RS256 with a 2048-bit key, ES256, EdDSA with Ed25519, and HS256 for reference),
with the key already loaded:
* cold: every call carries a token not seen before (signature, claims, strict JSON parse);
* cached: the same token again (what an agent repeating its bearer token costs);
* pyjwt: PyJWT's ``decode`` of the same tokens alone, and ``signature``: the algorithm's
  verify alone, to show where the cold time goes.
Prints the median and p99 in microseconds; results go to bench/results/bench_tokens.json.
In-process, no network; every loop is bounded by --calls and a time budget.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cryptography
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intercept_addon.proxy.jwks import StaticKeys  # noqa: E402
from intercept_addon.proxy.token_keys import Key, family  # noqa: E402
from intercept_addon.proxy.tokens import TokenVerifier  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_tokens.json"
HARD_LIMIT_SECONDS = 120.0
ISSUER, AUDIENCE = "https://issuer.bench", "mcp-proxy"


def signing_keys() -> dict[str, tuple[Any, Any]]:
    """alg -> (signing key, verifying key)."""
    secret = b"s" * 32
    pairs: dict[str, Any] = {
        "RS256": rsa.generate_private_key(65537, 2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    keys = {alg: (private, private.public_key()) for alg, private in pairs.items()}
    keys["HS256"] = (secret, secret)
    return keys


def bearer_tokens(alg: str, private: Any, count: int) -> list[str]:
    exp = int(time.time()) + 3600
    return [jwt.encode({"sub": f"user{i}", "iss": ISSUER, "aud": AUDIENCE, "exp": exp, "iat": exp - 3600,
                        "groups": ["eng", "ops"], "tenant": "acme"}, private, algorithm=alg, headers={"kid": "k1"})
            for i in range(count)]


async def timed(calls: int, one: Callable[[int], Awaitable[Any]]) -> list[float]:
    gc.collect()
    gc.disable()
    try:
        samples = []
        for i in range(calls):
            started = time.perf_counter_ns()
            await one(i)
            samples.append((time.perf_counter_ns() - started) / 1000)
        return samples
    finally:
        gc.enable()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_us": round(statistics.median(ordered), 2), "p99_us": round(ordered[int(len(ordered) * 0.99)], 2),
            "n": len(ordered)}


async def bench_algorithm(alg: str, private: Any, public: Any, calls: int) -> dict[str, dict[str, float]]:
    verifier = TokenVerifier(StaticKeys(Key(None, public, family(public))), algorithms=frozenset({alg}),
                             issuer=ISSUER, audience=AUDIENCE, leeway=30, cache_size=calls * 2)
    fresh = bearer_tokens(alg, private, calls)
    headers = [f"Bearer {t}" for t in fresh]
    await verifier.verify(headers[0])  # warm the code paths
    cold = await timed(calls - 1, lambda i: verifier.verify(headers[i + 1]))
    cached = await timed(calls, lambda i: verifier.verify(headers[0]))

    decoder = jwt.PyJWT()

    async def pyjwt_decode(i: int) -> None:
        decoder.decode(fresh[i], public, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER, leeway=30)

    algorithm = jwt.get_algorithm_by_name(alg)
    prepared = algorithm.prepare_key(public)
    parts = [t.encode().rsplit(b".", 1) for t in fresh]
    signatures = [(signing_input, jwt.utils.base64url_decode(sig)) for signing_input, sig in parts]

    async def signature(i: int) -> None:
        assert algorithm.verify(signatures[i][0], prepared, signatures[i][1])

    return {"cold": summary(cold), "cached": summary(cached), "pyjwt": summary(await timed(calls, pyjwt_decode)),
            "signature": summary(await timed(calls, signature))}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    deadline = time.monotonic() + HARD_LIMIT_SECONDS
    results: dict[str, Any] = {}
    for alg, (private, public) in signing_keys().items():
        if time.monotonic() > deadline:
            print(f"  (time budget reached before {alg})")
            break
        results[alg] = await bench_algorithm(alg, private, public, args.calls)
        row = "  ".join(f"{kind} {r['median_us']:7.1f} / {r['p99_us']:7.1f}" for kind, r in results[alg].items())
        print(f"{alg:6} median / p99 us:  {row}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "python": platform.python_version(), "pyjwt": jwt.__version__, "cryptography": cryptography.__version__,
        "machine": platform.machine(), "calls": args.calls, "results": results}, indent=2))
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
