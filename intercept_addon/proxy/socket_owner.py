"""Which local process holds one end of a TCP connection (Linux). No mitmproxy here.

Two exact steps:
1. The socket's inode, by its (local, remote) address pair: one sock_diag netlink request for
   that socket (the kernel looks it up in its connection hash, tens of µs whatever the number of
   sockets), else a search of /proc/net/tcp and tcp6 (milliseconds: the kernel prints every
   socket of the machine).
2. The process holding that inode, among /proc/PID/fd/*. The kernel keeps no index from socket
   to process, so this is a scan: the pids in ``first`` (recent owners) are tried before the
   rest, newest pid first. Without root, other users' fd tables cannot be read (EACCES): their
   sockets are not found.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator

Address = tuple  # (host, port) or IPv6's (host, port, flowinfo, scope_id)

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
ALL_STATES = 0xFFFFFFFF
NO_COOKIE = 0xFFFFFFFF
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, seq, pid
DIAG_REQUEST = struct.Struct("=BBBBI")  # family, protocol, ext, pad, states; then the socket id
DIAG_SOCKET_ID_PORTS = struct.Struct("!HH")  # local port, remote port (big-endian)
DIAG_SOCKET_ID_TAIL = struct.Struct("=III")  # interface, cookie (two words)
DIAG_MSG_COUNTERS = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode
DIAG_MSG_COUNTERS_AT = NLMSG_HEADER.size + 4 + 48  # after family/state/timer/retrans and the id


def _packed(host: str) -> tuple[int, bytes]:
    """(family, address bytes); an IPv4-mapped IPv6 address is read as the IPv4 one."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), ip.packed


def _mapped(packed: bytes) -> bytes:
    """An address as IPv6: IPv4 as ::ffff:a.b.c.d."""
    return b"\0" * 10 + b"\xff\xff" + packed if len(packed) == 4 else packed


def _pair(local: Address, remote: Address) -> tuple[int, bytes, bytes]:
    """One family for both ends: IPv4 when both are IPv4 (or mapped), else IPv6 (mapping IPv4)."""
    (lf, la), (rf, ra) = _packed(local[0]), _packed(remote[0])
    if lf != rf:
        return socket.AF_INET6, _mapped(la), _mapped(ra)
    return lf, la, ra


def socket_inode(local: Address, remote: Address) -> int | None:
    """The inode of the TCP socket whose own address is ``local`` and whose peer is ``remote``."""
    try:
        return diag_inode(local, remote)
    except OSError:  # no sock_diag here (seccomp, a sandbox kernel): the slow, printed table
        return proc_net_inode(local, remote)


def diag_inode(local: Address, remote: Address) -> int | None:
    """sock_diag's exact lookup (a request without NLM_F_DUMP): the one socket, or ENOENT."""
    family, la, ra = _pair(local, remote)
    request = (DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, ALL_STATES)
               + DIAG_SOCKET_ID_PORTS.pack(local[1], remote[1]) + la.ljust(16, b"\0") + ra.ljust(16, b"\0")
               + DIAG_SOCKET_ID_TAIL.pack(0, NO_COOKIE, NO_COOKIE))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)  # the kernel answers before sendto returns: this never waits in practice
        nl.sendto(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
                  + request, (0, 0))
        answer = nl.recv(8192)
    _, kind, _, _, _ = NLMSG_HEADER.unpack_from(answer)
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", answer, NLMSG_HEADER.size)
        if -error == 2:  # ENOENT: no such connection here
            return None
        raise OSError(-error, os.strerror(-error))
    if kind != SOCK_DIAG_BY_FAMILY:
        raise OSError(f"unexpected sock_diag answer type {kind}")
    *_, inode = DIAG_MSG_COUNTERS.unpack_from(answer, DIAG_MSG_COUNTERS_AT)
    return inode


def _proc_net_text(packed: bytes, port: int) -> str:
    """An address as /proc/net/tcp* prints it: 32-bit words in host order, in hex; port in hex."""
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def proc_net_inode(local: Address, remote: Address) -> int | None:
    """The same socket found in /proc/net/tcp (IPv4) and tcp6 (IPv6, and IPv4 mapped into it)."""
    family, la, ra = _pair(local, remote)
    tables = [("/proc/net/tcp6", _mapped(la), _mapped(ra))]
    if family == socket.AF_INET:
        tables.insert(0, ("/proc/net/tcp", la, ra))
    for path, lp, rp in tables:
        wanted = f" {_proc_net_text(lp, local[1])} {_proc_net_text(rp, remote[1])} "
        with open(path) as table:
            for line in table:
                if wanted in line:
                    return int(line.split()[9])  # sl local remote st queues timer retr uid timeout inode
    return None


def _pids_newest_first() -> list[int]:
    return sorted((int(name) for name in os.listdir("/proc") if name.isdigit()), reverse=True)


def fd_holding(pid: int, target: str) -> int | None:
    """The fd of ``pid`` whose link reads ``target`` ("socket:[INODE]"); None if none or unreadable."""
    try:
        fds = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # gone, a kernel thread, or another user's process without root
        return None
    try:
        for fd in os.listdir(fds):
            try:
                if os.readlink(fd, dir_fd=fds) == target:
                    return int(fd)
            except OSError:  # closed while we read
                continue
    except OSError:
        return None
    finally:
        os.close(fds)
    return None


def owner(inode: int, first: Iterable[int] = ()) -> tuple[int, int] | None:
    """(pid, fd) of a process holding socket ``inode``: the pids in ``first``, then all."""
    target = f"socket:[{inode}]"
    tried: set[int] = set()
    for pid in _candidates(first, tried):
        fd = fd_holding(pid, target)
        if fd is not None:
            return pid, fd
    return None


def _candidates(first: Iterable[int], tried: set[int]) -> Iterator[int]:
    for pid in first:
        tried.add(pid)
        yield pid
    # Listed only if the hints missed. Newest first: an agent is younger than the desktop.
    yield from (pid for pid in _pids_newest_first() if pid not in tried)


def holds(pid: int, fd: int, inode: int) -> bool:
    """``pid``'s ``fd`` is still socket ``inode``: it did not exit and hand its pid on meanwhile."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]"
    except OSError:
        return False
