"""Run the real mcp-sora MCP server on a loopback address.

``mcp-sora --transport http`` hard-codes ``uvicorn.run(app, host="0.0.0.0")``.
This launcher builds the same Starlette app from mcp-sora's own objects (its
FastMCP instance ``core.server.mcp``, its tool and prompt modules, its
server-card helper) and serves it with uvicorn on 127.0.0.1. No tool is
reimplemented and no mcp-sora file is modified. Routes, as in mcp-sora's
``main.main()``:

* ``/mcp``: Streamable HTTP (stateless, JSON responses)
* ``/sse`` + ``/messages/``: legacy HTTP+SSE transport
* ``/health``, ``/favicon.ico``, ``/.well-known/mcp/server-card.json``

mcp-sora needs ``mcp<2``, so this file is run by the separate venv's
interpreter, as a plain script (it imports nothing from intercept_addon)::

    scripts/setup-sora-venv
    .venv-sora/bin/python intercept_addon/demo/sora_server.py --port 18081 \\
        --api-base-url http://127.0.0.1:18090

It prints one line when it accepts connections::

    sora-mcp listening on http://127.0.0.1:18081 (mcp=/mcp sse=/sse messages=/messages/)

``--port 0`` picks a free port (read it from that line). The upstream API URL
and token come from ``--api-base-url``/``--api-token`` or the environment
(``ACEDATACLOUD_API_BASE_URL``, ``ACEDATACLOUD_API_TOKEN``; the token defaults
to ``demo-token``). Without a base URL it refuses to start, so a demo never
reaches the real AceData API by accident.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import sys
import sysconfig
import tempfile


def _isolate_sys_path() -> None:
    """Make sure mcp-sora's top-level ``core``/``tools``/``prompts`` come from site-packages.

    Running ``python path/to/sora_server.py`` puts this file's directory first
    on sys.path; drop it (and any cwd entry). PYTHONPATH entries stay, but
    ``_check_origin`` refuses to run if they shadow mcp-sora's modules.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p not in ("", ".") and os.path.abspath(p) != here]


def _check_origin(module: object, name: str) -> None:
    """Fail loudly if a module shadowed mcp-sora's (it must live in site-packages)."""
    path = os.path.realpath(getattr(module, "__file__", "") or "")
    roots = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    if not any(path.startswith(root + os.sep) for root in roots):
        raise SystemExit(
            f"sora_server: module {name!r} was imported from {path or '?'}, not from "
            f"mcp-sora in site-packages ({', '.join(sorted(roots))}); something shadows it"
        )


def build_app():  # type: ignore[no-untyped-def]
    """Compose mcp-sora's ASGI app exactly as its ``main.main()`` does in HTTP mode."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, RedirectResponse
    from starlette.routing import BaseRoute, Mount, Route

    import core
    import core.server
    from core.server import mcp, oauth_provider
    from core.server_card import registered_tool_cards

    import prompts  # noqa: F401  (registers the prompts on ``mcp``)
    import tools  # noqa: F401  (registers the tools on ``mcp``)

    for name, mod in (("core", core), ("prompts", prompts), ("tools", tools)):
        _check_origin(mod, name)

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def favicon(_request: Request) -> RedirectResponse:
        # Same redirect as mcp-sora; it is only a Location header, nothing is fetched.
        return RedirectResponse("https://cdn.acedata.cloud/z5id1u.png", status_code=301)

    async def server_card(_request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "serverInfo": {"name": "MCP Sora"},
                "authentication": {"required": True, "schemes": ["bearer"]},
                "tools": registered_tool_cards(mcp),
                "prompts": [
                    {"name": "sora_video_generation_guide", "description": "Guide for video generation"},
                    {"name": "sora_workflow_examples", "description": "Example workflows"},
                    {"name": "sora_prompt_writing_guide", "description": "Prompt writing guide"},
                ],
                "resources": [],
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):  # type: ignore[no-untyped-def]
        async with mcp.session_manager.run():
            yield

    # Must be set before streamable_http_app() creates the session manager.
    mcp.settings.stateless_http = True
    mcp.settings.json_response = True
    mcp.settings.streamable_http_path = "/mcp"

    routes: list[BaseRoute] = [
        Route("/health", health),
        Route("/favicon.ico", favicon),
        Route("/.well-known/mcp/server-card.json", server_card),
    ]
    if oauth_provider:
        routes.append(Route("/oauth/callback", oauth_provider.handle_callback))
    # Legacy /sse + /messages/ next to Streamable HTTP /mcp, in mcp-sora's order.
    routes.extend(mcp.sse_app().routes)
    routes.append(Mount("/", app=mcp.streamable_http_app()))
    return Starlette(routes=routes, lifespan=lifespan), mcp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the real mcp-sora on a loopback address.")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=18081, help="port (0 = any free port)")
    parser.add_argument("--api-base-url", help="AceData API base URL (default: $ACEDATACLOUD_API_BASE_URL)")
    parser.add_argument("--api-token", help="AceData API token (default: $ACEDATACLOUD_API_TOKEN or demo-token)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    parser.add_argument(
        "--allow-oauth",
        action="store_true",
        help="keep MCP_SERVER_URL from the environment (enables mcp-sora's OAuth + redis); "
        "by default it is removed",
    )
    args = parser.parse_args(argv)

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error(f"--host must be a loopback IP address, got {args.host!r}")

    base_url = args.api_base_url or os.environ.get("ACEDATACLOUD_API_BASE_URL")
    if not base_url:
        parser.error("set --api-base-url or ACEDATACLOUD_API_BASE_URL (e.g. the fake: http://127.0.0.1:18090)")
    # mcp-sora reads these at import time (module-level Settings() and SoraClient()).
    os.environ["ACEDATACLOUD_API_BASE_URL"] = base_url.rstrip("/")
    os.environ["ACEDATACLOUD_API_TOKEN"] = (
        args.api_token or os.environ.get("ACEDATACLOUD_API_TOKEN") or "demo-token"
    )
    if not args.allow_oauth:
        os.environ.pop("MCP_SERVER_URL", None)

    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the
    # signal with the previous handler; make that (and a signal during startup)
    # a normal exit so the finally block below still removes the temporary cwd.
    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)

    # A clean cwd: nothing mcp-sora (or python-dotenv) might look for is there.
    workdir = tempfile.mkdtemp(prefix="sora-mcp-")
    try:
        os.chdir(workdir)
        _isolate_sys_path()
        return _serve(args.host, args.port, args.log_level)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(workdir)


def _serve(host: str, port: int, log_level: str) -> int:
    import uvicorn

    app, mcp = build_app()
    upstream = os.environ["ACEDATACLOUD_API_BASE_URL"]
    n_tools = len(mcp._tool_manager.list_tools())

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):  # type: ignore[no-untyped-def]
            await super().startup(sockets=sockets)
            if self.started:  # sockets are bound and the lifespan has run
                bound = self.servers[0].sockets[0].getsockname()[1]
                print(
                    f"sora-mcp listening on http://{host}:{bound} "
                    f"(mcp=/mcp sse=/sse messages=/messages/) tools={n_tools} upstream={upstream}",
                    flush=True,
                )

    server = Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on"))
    server.run()  # on a bind error uvicorn logs it and raises SystemExit(3)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
