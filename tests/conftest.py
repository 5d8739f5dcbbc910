"""Shared fixtures: real MCP servers and a real mitmdump with the addon, all on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Process, start_mcp_server, start_mitmdump
from redis_server import RedisServer

TEST_POLICY = """\
version: "1"
description: test policy
hide: [secret_admin]
tools:
  delete_everything:
    rules:
      - name: no deletes
        action: deny
        on_deny: "Deleting everything is not allowed"
  generate:
    rules:
      - name: generate limit
        action: allow
        rate_limit: {max: 3, window: 60}
  charge:
    rules:
      - name: max charge
        conditions:
          - {path: args.amount, op: lte, value: 500}
        on_deny: "Charges above 500 are not allowed"
  "missing_*":
    rules:
      - name: one missing tool per minute
        action: allow
        rate_limit: {max: 1, window: 60}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(TEST_POLICY)
    return path


class Stack:
    """A test MCP server behind mitmdump with the addon."""

    def __init__(self, tmp: Path, policy: Path, server_args: tuple[str, ...] = (),
                 proxy_options: tuple[str, ...] = ("intercept_state=memory",), transport: str = "streamable-http"):
        self.procs: list[Process] = []
        server, self.server_port, self.side_log = start_mcp_server(tmp, *server_args, transport=transport)
        self.procs.append(server)
        proxy, self.proxy_port = start_mitmdump(tmp, self.server_port, *proxy_options, policy=policy)
        self.procs.append(proxy)
        self.proxy = proxy

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/mcp"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def stack_factory(tmp_path: Path, policy_file: Path):
    stacks: list[Stack] = []

    def make(*server_args: str, options: tuple[str, ...] = ("intercept_state=memory",),
             transport: str = "streamable-http") -> Stack:
        stack = Stack(tmp_path, policy_file, server_args, options, transport)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One real redis-server for the session (no persistence); tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
