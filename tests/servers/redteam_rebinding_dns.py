"""A mitmdump script standing in for a rebinding DNS server (an attacker's, answering with TTL 0):
the first lookup of ``rebind.test`` in the process answers 10.9.9.9, every later one 127.0.0.1.
Only that name is answered here; every other lookup goes to the system resolver. For red-team
tests of a proxy that judges one lookup and connects after another."""

import socket

_system = socket.getaddrinfo
_seen = 0


def _getaddrinfo(host, port, *args, **kwargs):
    global _seen
    if host != "rebind.test":
        return _system(host, port, *args, **kwargs)
    _seen += 1
    address = "10.9.9.9" if _seen == 1 else "127.0.0.1"
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0)))]


socket.getaddrinfo = _getaddrinfo
