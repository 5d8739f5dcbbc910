"""LocalProcesses: the local process behind a client connection, with real sockets and real
child processes. The test owns a listening socket that stands in for the proxy; each child
connects to it, and the accepted connection's addresses make the mitmproxy Client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mitmproxy import connection

from harness import BIN, ROOT, Process, clean_env, free_port, start_mitmdump
from intercept_addon.proxy import local_process, socket_owner
from intercept_addon.proxy.local_process import LocalProcess, LocalProcesses, on_this_machine
from test_transparent_mode import AGENT_GID, in_ns, netns, wait_for_log  # noqa: F401 (netns: a fixture)

# Connects, says so, then holds the connection until its stdin closes.
CHILD = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])));"
         " print('connected', flush=True); sys.stdin.read()")


class Child:
    """A child process connected to ``listener``, and the Client the proxy side would see."""

    def __init__(self, listener: socket.socket, host: str = "127.0.0.1"):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, host, str(listener.getsockname()[1])],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "connected\n"
        self.conn, peer = listener.accept()
        self.client = connection.Client(peername=peer, sockname=self.conn.getsockname(),
                                        timestamp_start=time.time())
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        self.conn.close()


def _listen(family: int, host: str, dual_stack: bool = False) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    if dual_stack:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, 0))
    s.listen(16)
    return s


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with _listen(socket.AF_INET, "127.0.0.1") as s:
        yield s


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every call of the low-level lookup, counted by wrapping it."""
    calls: list[tuple] = []
    real = local_process.find_process

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(local_process, "find_process", counting)
    return calls


def test_names_the_child_that_connected(listener, children):
    children.append(child := Child(listener))
    found = LocalProcesses().of(child.client)
    assert found is not None
    assert found.pid == child.pid
    assert found.started == psutil.Process(child.pid).create_time()
    assert found.name == psutil.Process(child.pid).name()
    assert found.command.startswith(sys.executable + " -c import socket")
    assert found.key == f"{child.pid}@{round(found.started * 1000)}"


def test_a_second_child_is_another_key(listener, children):
    processes = LocalProcesses()
    children.extend([first := Child(listener), second := Child(listener)])
    a, b = processes.of(first.client), processes.of(second.client)
    assert a is not None and b is not None
    assert (a.pid, b.pid) == (first.pid, second.pid)
    assert a.key != b.key


def test_two_connections_of_one_process_are_one_key(listener):
    processes = LocalProcesses()
    with socket.create_connection(listener.getsockname()), socket.create_connection(listener.getsockname()):
        accepted = [listener.accept() for _ in range(2)]
        found = [processes.of(connection.Client(peername=peer, sockname=conn.getsockname(), timestamp_start=0))
                 for conn, peer in accepted]
        for conn, _ in accepted:
            conn.close()
    assert found[0] is not None and found[0].pid == os.getpid()
    assert found[0] == found[1]


def test_a_restarted_child_is_a_new_key(listener, children):
    processes = LocalProcesses()
    children.append(first := Child(listener))
    before = processes.of(first.client)
    first.stop()
    time.sleep(0.05)  # start times have a 10 ms resolution
    children.append(again := Child(listener))
    after = processes.of(again.client)
    assert before is not None and after is not None
    assert after.started > before.started
    assert after.key != before.key


def _fork_with_pid(pid: int, listener: socket.socket) -> Child | None:
    """A child that gets ``pid``: the kernel's next pid is set just below it (root only)."""
    with open("/proc/sys/kernel/ns_last_pid", "w") as last:
        last.write(str(pid - 1))
    child = Child(listener)
    if child.pid == pid:
        return child
    child.stop()  # another process forked in between: try again
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="setting the next pid needs root")
def test_a_reused_pid_is_a_new_key(listener, children):
    processes = LocalProcesses()
    children.append(first := Child(listener))
    before = processes.of(first.client)
    first.stop()
    time.sleep(0.05)
    again = None
    for _ in range(20):
        if again := _fork_with_pid(first.pid, listener):
            break
    assert again is not None, "could not get the same pid back"
    children.append(again)
    after = processes.of(again.client)
    assert before is not None and after is not None
    assert after.pid == before.pid
    assert after.started > before.started
    assert after.key != before.key


def test_a_peer_on_another_machine_is_none_without_any_lookup(listener, lookups, monkeypatch):
    inodes: list[tuple] = []
    monkeypatch.setattr(socket_owner, "socket_inode", lambda *a: inodes.append(a))
    client = connection.Client(peername=("192.0.2.10", 40000), sockname=listener.getsockname(), timestamp_start=0)
    processes = LocalProcesses()
    assert processes.of(client) is None
    assert processes.of(client) is None
    assert len(lookups) == 1  # a None answer is remembered too
    assert inodes == []  # not even the socket table was asked


def test_this_hosts_own_addresses_are_local():
    assert on_this_machine("127.0.0.1") and on_this_machine("::1") and on_this_machine("::ffff:127.0.0.1")
    assert on_this_machine("127.3.4.5")
    assert not on_this_machine("192.0.2.10") and not on_this_machine("2001:db8::1")
    own = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
           if a.family == socket.AF_INET and not a.address.startswith("127.")]
    for address in own:
        assert on_this_machine(address)


def test_forget_empties_the_cache(listener, children, lookups):
    processes = LocalProcesses()
    children.append(child := Child(listener))
    assert processes.of(child.client) is not None
    assert len(processes) == 1
    processes.forget(child.client)
    assert len(processes) == 0
    processes.forget(child.client)  # twice, as a disconnect after an eviction would
    assert processes.of(child.client) is not None
    assert len(lookups) == 2  # forgotten: looked up anew


def test_cache_is_bounded_least_recent_out(listener, children, lookups):
    processes = LocalProcesses(max_clients=2)
    children.extend(Child(listener) for _ in range(3))
    a, b, c = (child.client for child in children)
    processes.of(a), processes.of(b), processes.of(a), processes.of(c)  # b is the least recent
    assert len(processes) == 2
    assert len(lookups) == 3
    processes.of(a)
    assert len(lookups) == 3
    processes.of(b)
    assert len(lookups) == 4


async def test_looked_up_once_per_connection(listener, children, lookups):
    processes = LocalProcesses()
    children.extend([first := Child(listener), second := Child(listener)])
    resolved = await processes.resolve(first.client)  # in client_connected: a worker thread
    assert resolved is not None and resolved.pid == first.pid
    for _ in range(5):  # every request of the connection
        assert processes.of(first.client) == resolved
    assert await processes.resolve(first.client) == resolved
    assert len(lookups) == 1
    assert processes.of(second.client).pid == second.pid  # type: ignore[union-attr]
    assert len(lookups) == 2


async def test_concurrent_requests_share_one_lookup(listener, children, lookups):
    processes = LocalProcesses()
    children.append(child := Child(listener))
    waiting = [asyncio.ensure_future(processes.resolve(child.client)) for _ in range(5)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one request gone: the others still get the answer
    found = await asyncio.gather(*waiting[1:])
    assert {p.pid for p in found} == {child.pid}  # type: ignore[union-attr]
    assert len(lookups) == 1
    assert len(processes) == 1


async def test_forgotten_while_looking_up_is_not_remembered(listener, children, lookups):
    processes = LocalProcesses()
    children.append(child := Child(listener))
    waiting = asyncio.ensure_future(processes.resolve(child.client))
    await asyncio.sleep(0)  # the lookup is running in its thread
    processes.forget(child.client)  # client_disconnected
    assert (await waiting).pid == child.pid  # type: ignore[union-attr]
    assert len(processes) == 0


def test_recent_owners_are_tried_first(listener, children, monkeypatch):
    processes = LocalProcesses()
    children.extend([first := Child(listener), second := Child(listener)])
    assert processes.of(first.client).pid == first.pid  # type: ignore[union-attr]
    hints: list[tuple] = []
    real = socket_owner.owner
    monkeypatch.setattr(socket_owner, "owner", lambda inode, first=(): hints.append(tuple(first)) or real(inode, first))
    assert processes.of(second.client).pid == second.pid  # type: ignore[union-attr]
    assert hints == [(first.pid,)]  # tried, missed, then the scan found the second child


@pytest.mark.parametrize("family, host, dual_stack, connect_to", [
    (socket.AF_INET6, "::1", False, "::1"),
    (socket.AF_INET6, "::ffff:127.0.0.1", True, "127.0.0.1"),  # IPv4 client, peer ::ffff:127.0.0.1
])
def test_ipv6_and_ipv4_mapped_peers(family, host, dual_stack, connect_to, children):
    with _listen(family, host, dual_stack) as listener:
        children.append(child := Child(listener, connect_to))
        assert child.client.peername[0] == host
        found = LocalProcesses().of(child.client)
    assert found is not None and found.pid == child.pid


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_printed_table_finds_the_same_socket(host, children, monkeypatch):
    family = socket.AF_INET if host == "127.0.0.1" else socket.AF_INET6
    with _listen(family, host) as listener:
        children.append(child := Child(listener, host))
        peer, proxy = child.client.peername, child.client.sockname
        inode = socket_owner.diag_inode(peer, proxy)
        assert inode is not None and socket_owner.proc_net_inode(peer, proxy) == inode
        mapped = ("::ffff:" + peer[0], peer[1]) if family == socket.AF_INET else peer
        assert socket_owner.proc_net_inode(mapped, proxy) == inode

        def no_netlink(*_):  # type: ignore[no-untyped-def]
            raise PermissionError("sock_diag refused")

        monkeypatch.setattr(socket_owner, "diag_inode", no_netlink)
        found = LocalProcesses().of(child.client)
    assert found is not None and found.pid == child.pid


def test_a_peer_that_has_gone_is_none(listener, children):
    children.append(child := Child(listener))
    child.proc.kill()
    child.proc.wait(timeout=10)
    assert LocalProcesses().of(child.client) is None  # its socket is closed, or no one's (TIME_WAIT)


def test_a_failure_is_none_and_logged_once(listener, children, monkeypatch, caplog):
    children.extend([Child(listener), Child(listener)])

    def broken(*_):  # type: ignore[no-untyped-def]
        raise RuntimeError("no /proc")

    monkeypatch.setattr(socket_owner, "socket_inode", broken)
    processes = LocalProcesses()
    with caplog.at_level(logging.DEBUG, logger=local_process.__name__):
        assert [processes.of(c.client) for c in children] == [None, None]
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "RuntimeError" in caplog.text


def test_key_is_pid_and_start_time_not_name():
    a = LocalProcess(pid=42, started=1733090000.12, name="node", command="node agent.js")
    assert a.key == "42@1733090000120"
    assert LocalProcess(42, a.started, "renamed", "").key == a.key
    assert LocalProcess(42, a.started + 0.01, "node", "").key != a.key


# The proxy side, in its own process: listens, has its own child connect, accepts one more
# connection (from another user's process, started by the test), prints the pid found for each.
PROXY_SIDE = """
import json, socket, subprocess, sys
from mitmproxy import connection
from intercept_addon.proxy.local_process import LocalProcesses
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
print(listener.getsockname()[1], flush=True)
own = subprocess.Popen([sys.executable, "-c", sys.argv[1], "127.0.0.1", str(listener.getsockname()[1])],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
processes, found = LocalProcesses(), []
for _ in range(2):
    conn, peer = listener.accept()
    p = processes.of(connection.Client(peername=peer, sockname=conn.getsockname(), timestamp_start=0))
    found.append(p and p.pid)
print(json.dumps({"own": own.pid, "found": found}), flush=True)
own.stdin.close(); own.wait()
"""
# Root without capabilities reads /proc as an ordinary user does: its own uid's fd tables only.
# (The venv's Python is under /root, 0700: another uid could not start it at all.)
NO_CAPABILITIES = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, and another user's process")
@pytest.mark.parametrize("privileged", [True, False], ids=["root", "ordinary-user"])
def test_root_finds_every_process_an_ordinary_user_only_its_own(privileged):
    proxy = subprocess.Popen([*([] if privileged else NO_CAPABILITIES), sys.executable, "-c", PROXY_SIDE, CHILD],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env=clean_env(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1"))
    other = None
    try:
        assert proxy.stdout is not None
        port = int(proxy.stdout.readline())
        # nobody's process: bash opens the connection as fd 3, then execs sleep (same pid) holding it
        other = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c",
                                  f"exec 3<>/dev/tcp/127.0.0.1/{port}; exec sleep 30"], cwd="/")
        out = json.loads(proxy.stdout.readline())
    finally:
        proxy.wait(timeout=30)
        if other is not None:
            other.kill()
            other.wait(timeout=10)
    assert other.pid not in (out["own"], None)
    expected = [out["own"], other.pid if privileged else None]
    assert sorted(out["found"], key=str) == sorted(expected, key=str)


# e2e: the probe script inside a real mitmdump, asked twice on one connection by a child.
ASK_TWICE = """
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
answers = []
for _ in range(2):
    conn.request("GET", sys.argv[2])
    answers.append(json.loads(conn.getresponse().read()))
print(json.dumps(answers))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["reverse", "regular"])
def test_inside_mitmdump(mode, tmp_path: Path, policy_file: Path):
    upstream = 9  # never reached: the probe answers in the request hook (connection_strategy=lazy)
    proxy, port = start_mitmdump(tmp_path, upstream, "intercept_state=memory", policy=policy_file,
                                 mode=None if mode == "reverse" else "regular",
                                 scripts=[ROOT / "tests/servers/local_process_probe.py"])
    target = "/__local_process" if mode == "reverse" else f"http://127.0.0.1:{upstream}/__local_process"
    try:
        agent = subprocess.Popen([sys.executable, "-c", ASK_TWICE, str(port), target],
                                 stdout=subprocess.PIPE, text=True, env=clean_env())
        started = psutil.Process(agent.pid).create_time()
        out, _ = agent.communicate(timeout=30)
    finally:
        proxy.stop()
    assert agent.returncode == 0, proxy.output()[-2000:]
    first, second = json.loads(out)
    assert first == second  # one connection, one answer
    assert first["process"]["pid"] == agent.pid
    assert first["process"]["started"] == started
    assert first["process"]["key"] == f"{agent.pid}@{round(started * 1000)}"
    assert first["connections"] == 1


@pytest.mark.e2e
def test_inside_mitmdump_transparent(netns, tmp_path: Path, policy_file: Path):
    """The agent's socket is connected to the original destination, not to the proxy: the
    kernel redirected it (the namespace and rule as in test_transparent_mode)."""
    server_port, proxy_port = free_port(), free_port()  # nothing listens on server_port: the probe answers
    proxy = Process(in_ns(netns, str(BIN / "mitmdump"), "--mode", "transparent", "--listen-host", "127.0.0.1",
                          "-p", str(proxy_port), "-s", str(ROOT / "intercept_addon.py"),
                          "-s", str(ROOT / "tests/servers/local_process_probe.py"),
                          "--set", f"confdir={tmp_path / 'mitmproxy'}", "--set", f"intercept_policy={policy_file}",
                          "--set", "intercept_state=memory", "--set", "connection_strategy=lazy"),
                    tmp_path / "mitmdump.log")
    try:
        wait_for_log(proxy, "listening at")
        subprocess.run(in_ns(netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.1",
                             "--dport", str(server_port), "-m", "owner", "--gid-owner", str(AGENT_GID),
                             "-j", "REDIRECT", "--to-ports", str(proxy_port)), check=True)
        agent = subprocess.Popen(in_ns(netns, "setpriv", f"--regid={AGENT_GID}", "--clear-groups",
                                       sys.executable, "-c", ASK_TWICE, str(server_port), "/__local_process"),
                                 stdout=subprocess.PIPE, text=True, env=clean_env())
        started = psutil.Process(agent.pid).create_time()
        out, _ = agent.communicate(timeout=30)
    finally:
        proxy.stop()
    assert agent.returncode == 0, proxy.output()[-2000:]
    first, second = json.loads(out)
    assert first == second
    assert first["process"]["pid"] == agent.pid  # ip and setpriv exec: the pid is python's
    assert first["process"]["started"] == started
