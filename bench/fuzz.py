"""Coverage-guided fuzzing (atheris, i.e. libFuzzer) of what every byte from outside goes through.

    .venv/bin/python bench/fuzz.py request [libFuzzer flags]   # e.g. -max_total_time=600 -jobs=2
    .venv/bin/python bench/fuzz.py sse [libFuzzer flags]
    make fuzz                                                  # both targets, 5 minutes each

Targets (the oracles are in tests/oracles.py):
  request  an input is "H:" + header lines + a blank line + a POST body, or just a body. It goes
           through jsonrpc.loads, classify, mcp.tool_call and check_routing_headers. A bug: any
           exception but ProtocolError, a body that does not survive dumps/loads, a lenient JSON
           parser reading the body differently, a lenient server running another tool.
  sse      the first bytes choose the event cap and chunk sizes, the rest is an event stream fed
           through SseRewriter twice: with no rewriting (output must be byte-identical) and with the
           addon's own transform (must not raise). In both, held bytes never exceed the cap.

Seeds: every request of the hostile corpus (tests/test_hostile_inputs.py) and captured SSE shapes
(tests/test_sse.py). A failing input is printed and saved as crash-* in --artifacts (default: a
fresh temporary folder); replay it with `bench/fuzz.py TARGET path/to/crash-*`. tests/test_fuzz.py
runs both targets with a fixed count and seed on every `make test`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

with atheris.instrument_imports(include=["intercept_addon", "oracles"]):
    from intercept_addon.wire.sse import SseRewriter
    from oracles import addon_sse_transform, check_request
    from intercept_addon.wire.jsonrpc import ProtocolError


def split_request(data: bytes) -> tuple[dict[str, str], bytes]:
    if not data.startswith(b"H:") or b"\n\n" not in data:
        return {}, data
    head, body = data[2:].split(b"\n\n", 1)
    headers = {}
    for line in head.decode("utf-8", "replace").split("\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


def request_target(data: bytes) -> None:
    headers, body = split_request(data)
    check_request(body, headers)


def sse_target(data: bytes) -> None:
    if len(data) < 2:
        return
    cap = 16 + data[0] * 4  # 16..1036: small enough that oversized events are common
    sizes = [1 + (b & 0x3F) for b in data[1:9]]  # chunk sizes cycle through these
    stream = data[9:]
    chunks, i = [], 0
    while i < len(stream):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(stream[i : i + size])
        i += size
    for transform, identical in ((lambda ev: None, True), (addon_sse_transform({1, "1"}), False)):
        rewriter = SseRewriter(transform, max_event_bytes=cap)
        out = bytearray()
        try:
            for chunk in chunks:
                out += rewriter.feed(chunk)
                assert rewriter.buffered <= cap, f"held {rewriter.buffered} bytes, cap {cap}"
            out += rewriter.feed(b"")
        except ProtocolError:  # the addon cuts the stream here: the only exception allowed
            assert not identical
            continue
        assert not identical or out == stream, "identity rewriting changed the stream"


def seeds(target: str) -> list[bytes]:
    if target == "request":
        from test_hostile_inputs import CASES

        out = []
        for body, extra, _path in CASES.values():
            raw = body.encode() if isinstance(body, str) else body
            if len(raw) > 100_000:
                continue  # the huge bodies teach nothing a short one does not
            head = "".join(f"{k}: {v}\n" for k, v in extra.items() if k.startswith("mcp-"))
            out.append(b"H:" + head.encode() + b"\n" + raw if head else raw)
        return out
    from test_sse import SHAPES

    found = [b'event: message\r\ndata: {"jsonrpc":"2.0","id":{"ts":[]}}\r\n\r\n']  # crashed the addon's transform
    return [bytes([cap, 1, 2, 3, 5, 8, 13, 21, 34]) + shape for shape in [*SHAPES, *found] for cap in (0, 255)]


TARGETS = {"request": request_target, "sse": sse_target}
# libFuzzer splices these in: the json scanner is C code, so coverage alone barely finds them.
DICTIONARY = {
    "request": ['"jsonrpc"', '"2.0"', '"id"', '"method"', '"params"', '"result"', '"error"', '"name"', '"arguments"',
                '"_meta"', '"tools/call"', '"tools/list"', '"Name"', '"\\u0061"', '"\\ud800"', "NaN", "1e999", "-0",
                "null", "true", "[", "{", ":", ",", "H:mcp-method: tools/call\n", "H:mcp-name: echo\n",
                "mcp-protocol-version: 2026-07-28\n", "=?base64?", "\n\n"],
    "sse": ["data:", "data: ", "event: message", "id:", "retry:", ":", "\r\n", "\r", "\n\n", "\ufeff",
            '{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret_admin"}]}}'],
}


def libfuzzer_escape(token: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--artifacts", type=Path, help="where crash-* inputs go (default: a new temporary folder)")
    args, libfuzzer = parser.parse_known_args()
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    artifacts = args.artifacts or work
    corpus = work / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(seeds(args.target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    dictionary = work / "tokens.dict"
    dictionary.write_text("".join(f'"{libfuzzer_escape(token.encode())}"\n' for token in DICTIONARY[args.target]))
    replay = [a for a in libfuzzer if not a.startswith("-")]  # explicit inputs: replay them only
    argv = [sys.argv[0], f"-artifact_prefix={artifacts}/", f"-dict={dictionary}", *libfuzzer, *([] if replay else [str(corpus)])]
    print(f"fuzz {args.target}: corpus {corpus}, artifacts {artifacts}", flush=True)
    atheris.Setup(argv, TARGETS[args.target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
