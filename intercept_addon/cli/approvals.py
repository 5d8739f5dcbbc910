"""``intercept-addon approvals``: calls held for approval, answered from a terminal through
mitmweb's own API (no web server of ours): ``GET /flows`` lists them, the commands
``intercept.approve`` and ``intercept.reject`` answer them, naming the terminal's user.

    intercept-addon approvals [--web URL] [--token TOKEN]            # list
    intercept-addon approvals approve FLOW [--for 10m] [--web URL]   # FLOW: an id or its start
    intercept-addon approvals reject FLOW [--reason TEXT] [--web URL]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_WEB = "http://127.0.0.1:8081"
ASK_PREFIX = "ASK "  # the comment of a held call (proxy/approvals.py)


class WebError(Exception):
    pass


class Web:
    """mitmweb's API: its token as a bearer, and tornado's double-submit XSRF value on POSTs."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.token = token or dict(urllib.parse.parse_qsl(parts.query)).get("token")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy

    def _send(self, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            xsrf = secrets.token_hex(16)
            headers.update({"Content-Type": "application/json", "Cookie": f"_mitmproxy_xsrf={xsrf}", "X-XSRFToken": xsrf})
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method="POST" if data else "GET")
        try:
            with self.opener.open(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            hint = " (give mitmweb's token: --token or MITMWEB_TOKEN)" if exc.code in (401, 403) else ""
            raise WebError(f"{self.base}{path}: HTTP {exc.code}{hint}") from None
        except OSError as exc:
            raise WebError(f"cannot reach mitmweb at {self.base}: {exc}") from None

    def held(self) -> list[dict[str, Any]]:
        return [f for f in self._send("/flows") if f.get("intercepted") and f.get("comment", "").startswith(ASK_PREFIX)]

    def command(self, name: str, *arguments: str) -> Any:
        answer = self._send(f"/commands/{name}", {"arguments": list(arguments)})
        if "error" in answer:
            raise WebError(f"{name}: {answer['error']}")
        return answer.get("value")


def _one(web: Web, flow: str) -> str:
    ids = [f["id"] for f in web.held() if f["id"].startswith(flow)]
    if len(ids) != 1:
        raise WebError(f"{len(ids)} held calls match {flow!r}: give more of the flow id")
    return ids[0]


def _run(args: argparse.Namespace) -> int:
    web = Web(args.web, args.token or os.environ.get("MITMWEB_TOKEN"))
    by = f"cli:{getpass.getuser()}"
    try:
        if args.answer is None:
            held = web.held()
            for f in held:
                print(f"{f['id']}  {f['comment'][len(ASK_PREFIX):]}")
            if not held:
                print("no call waiting for approval")
        elif args.answer == "approve":
            print(web.command("intercept.approve", f"@{_one(web, args.flow)}", args.duration or "", by))
        else:
            print(web.command("intercept.reject", f"@{_one(web, args.flow)}", args.reason or "", by))
    except WebError as exc:
        print(f"intercept-addon approvals: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("approvals", help="list the calls held for approval in mitmweb, approve or reject them")
    parser.add_argument("--web", default=os.environ.get("MITMWEB_URL", DEFAULT_WEB),
                        help=f"mitmweb's URL, as it prints it (default: MITMWEB_URL or {DEFAULT_WEB})")
    parser.add_argument("--token", help="mitmweb's token or web_password (default: MITMWEB_TOKEN, or the URL's ?token=)")
    where = argparse.ArgumentParser(add_help=False)  # --web and --token after the answer too
    where.add_argument("--web", default=argparse.SUPPRESS, help="mitmweb's URL")
    where.add_argument("--token", default=argparse.SUPPRESS, help="mitmweb's token")
    answers = parser.add_subparsers(dest="answer")
    approve = answers.add_parser("approve", parents=[where], help="let a held call through")
    approve.add_argument("flow", help="the flow id, or enough of its start")
    approve.add_argument("--for", dest="duration", help="also let the same agent's same call through for this "
                                                         "long without asking (e.g. 10m)")
    reject = answers.add_parser("reject", parents=[where], help="deny a held call")
    reject.add_argument("flow", help="the flow id, or enough of its start")
    reject.add_argument("--reason", help="what the agent is told")
    parser.set_defaults(run=_run)
