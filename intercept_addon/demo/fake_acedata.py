"""A small fake of the AceData Cloud Sora API, for demos and tests.

mcp-sora (the real MCP server) calls two upstream endpoints:

* ``POST /sora/videos``: submit a generation. mcp-sora adds ``"async": true``
  unless a ``callback_url`` is given, so the real API answers with a task id.
* ``POST /sora/tasks``: ``{"id": ..., "action": "retrieve"}`` or
  ``{"ids": [...], "action": "retrieve_batch"}``.

This fake answers both with plausible JSON (every task is immediately finished,
so mcp-sora's ``sora_get_task`` does not sleep), never contacts the network
(callback URLs are recorded, not called), and counts every request it receives.
The counters are the point: a demo or test can prove that a call the proxy
denied never reached the upstream API.

Control endpoints (not counted):

* ``GET /_calls``: ``{"total", "by_path", "by_tool", "requests": [...last 1000]}``
* ``POST /_reset``: clear counters, request log and tasks.

Run: ``python -m intercept_addon.demo.fake_acedata --port 18090`` (``--port 0``
picks a free port). Prints ``fake-acedata listening on http://127.0.0.1:N``.
In tests: ``server = start_in_thread()``; ``server.url``; ``server.stop()``.

Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeAceData", "FakeAceDataServer", "start_in_thread", "classify", "main"]

MAX_LOGGED_REQUESTS = 1000
MAX_TASKS = 10_000
MAX_BODY_BYTES = 10 * 1024 * 1024
VIDEO_HOST = "https://fake-acedata.invalid"  # .invalid: can never resolve


def classify(path: str, body: Any) -> str | None:
    """Guess which mcp-sora tool produced an upstream request.

    The mapping follows the payloads mcp-sora builds; it is a guess from the
    payload shape, good enough for counting.
    """
    if not isinstance(body, dict):
        return None
    if path == "/sora/videos":
        if str(body.get("version", "")) == "2.0":
            return "sora_generate_video_v2_async" if body.get("callback_url") else "sora_generate_video_v2"
        if body.get("character_url"):
            return "sora_generate_video_with_character"
        if body.get("callback_url"):
            return "sora_generate_video_async"
        if body.get("image_urls"):
            return "sora_generate_video_from_image"
        return "sora_generate_video"
    if path == "/sora/tasks":
        return {"retrieve": "sora_get_task", "retrieve_batch": "sora_get_tasks_batch"}.get(
            str(body.get("action"))
        )
    return None


class FakeAceData:
    """Thread-safe state: counters, request log and the tasks created so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.by_path: collections.Counter[str] = collections.Counter()
            self.by_tool: collections.Counter[str] = collections.Counter()
            self.requests: collections.deque[dict[str, Any]] = collections.deque(
                maxlen=MAX_LOGGED_REQUESTS
            )
            self.tasks: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()

    def record(self, method: str, path: str, body: Any, auth: str | None) -> None:
        tool = classify(path, body)
        with self._lock:
            self.total += 1
            self.by_path[path] += 1
            if tool:
                self.by_tool[tool] += 1
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "body": body,
                    "time": time.time(),
                    "tool": tool,
                    "auth": auth,
                }
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_path": dict(self.by_path),
                "by_tool": dict(self.by_tool),
                "requests": list(self.requests),
            }

    # --- the fake API -----------------------------------------------------

    def create_video_task(self, payload: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        task_id = str(uuid.uuid4())
        trace_id = str(uuid.uuid4())
        video_id = str(uuid.uuid4())
        response = {
            "success": True,
            "task_id": task_id,
            "trace_id": trace_id,
            "data": [
                {
                    "id": video_id,
                    "video_url": f"{VIDEO_HOST}/sora/{video_id}.mp4",
                    "thumbnail_url": f"{VIDEO_HOST}/sora/{video_id}.jpg",
                    "state": "succeeded",
                    "prompt": payload.get("prompt"),
                    "model": payload.get("model"),
                }
            ],
        }
        task = {
            "_id": uuid.uuid4().hex[:24],
            "id": task_id,
            "type": "videos",
            "trace_id": trace_id,
            "created_at": now,
            "finished_at": now,
            "request": payload,
            "response": response,
        }
        with self._lock:
            self.tasks[task_id] = task
            while len(self.tasks) > MAX_TASKS:
                self.tasks.popitem(last=False)
        return {"success": True, "task_id": task_id, "trace_id": trace_id}

    def get_task(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            task = self.tasks.get(task_id)
        if task is not None:
            return task
        # Unknown ids (e.g. from before a restart) still look finished, so
        # mcp-sora's poll loop never sleeps on the fake.
        now = time.time()
        video_id = str(uuid.uuid4())
        return {
            "_id": uuid.uuid4().hex[:24],
            "id": task_id,
            "type": "videos",
            "created_at": now,
            "finished_at": now,
            "request": {},
            "response": {
                "success": True,
                "task_id": task_id,
                "data": [
                    {
                        "id": video_id,
                        "video_url": f"{VIDEO_HOST}/sora/{video_id}.mp4",
                        "state": "succeeded",
                    }
                ],
            },
        }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    server: FakeAceDataServer
    protocol_version = "HTTP/1.1"
    server_version = "fake-acedata/0.1"

    # -- plumbing -------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                size += n
                if size > MAX_BODY_BYTES:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(n))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    # -- verbs ----------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        if path == "/_calls":
            self._send_json(200, self.server.state.snapshot())
            return
        self.server.state.record("GET", path, None, self.headers.get("Authorization"))
        self._send_json(404, _error("not_found", f"GET {path} not found"))

    def do_POST(self) -> None:  # noqa: N802
        path = self._path()
        state = self.server.state
        try:
            raw = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send_json(413, _error("too_large", str(exc)))
            return
        if path == "/_reset":
            state.reset()
            self._send_json(200, {"ok": True})
            return

        auth = self.headers.get("Authorization")
        try:
            body: Any = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            state.record("POST", path, raw.decode("utf-8", "replace"), auth)
            self._send_json(400, _error("bad_request", "request body is not valid JSON"))
            return
        state.record("POST", path, body, auth)

        if path not in ("/sora/videos", "/sora/tasks"):
            self._send_json(404, _error("not_found", f"POST {path} not found"))
            return
        if not auth or not auth.lower().startswith("bearer ") or not auth[7:].strip():
            self._send_json(401, _error("token_mismatched", "missing or invalid bearer token"))
            return
        if not isinstance(body, dict):
            self._send_json(400, _error("bad_request", "expected a JSON object"))
            return

        if path == "/sora/videos":
            if not isinstance(body.get("prompt"), str) or not body["prompt"]:
                self._send_json(400, _error("bad_request", "prompt is required"))
                return
            self._send_json(200, state.create_video_task(body))
            return

        action = body.get("action")
        if action == "retrieve" and isinstance(body.get("id"), str):
            self._send_json(200, state.get_task(body["id"]))
        elif action == "retrieve_batch" and isinstance(body.get("ids"), list):
            items = [state.get_task(str(i)) for i in body["ids"]]
            self._send_json(200, {"items": items, "count": len(items)})
        else:
            self._send_json(400, _error("bad_request", "unknown action or missing id(s)"))

    def do_PUT(self) -> None:  # noqa: N802
        self._other()

    def do_DELETE(self) -> None:  # noqa: N802
        self._other()

    def do_PATCH(self) -> None:  # noqa: N802
        self._other()

    def _other(self) -> None:
        try:
            self._read_body()
        except ValueError:
            self.close_connection = True
        path = self._path()
        self.server.state.record(self.command, path, None, self.headers.get("Authorization"))
        self._send_json(405, _error("method_not_allowed", f"{self.command} {path}"))


class FakeAceDataServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"refusing to bind non-loopback address {host!r}")
        self.state = FakeAceData()
        self.verbose = verbose
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"

    def stop(self) -> None:
        """Stop serving (if started in a thread) and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()


def start_in_thread(host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> FakeAceDataServer:
    """Start the fake in a daemon thread; returns the server (``.url``, ``.state``, ``.stop()``)."""
    server = FakeAceDataServer(host, port, verbose=verbose)
    server._thread = threading.Thread(
        target=server.serve_forever, name=f"fake-acedata:{server.port}", daemon=True
    )
    server._thread.start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake AceData Sora API (loopback only).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=18090, help="port (0 = any free port)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    try:
        server = FakeAceDataServer(args.host, args.port, verbose=args.verbose)
    except (OSError, ValueError) as exc:
        print(f"fake-acedata: {exc}", file=sys.stderr)
        return 1

    def _stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, so call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"fake-acedata listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
