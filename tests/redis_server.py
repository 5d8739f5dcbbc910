"""A real redis-server for tests: 127.0.0.1 only, a free port, its own directory, stopped by PID.

Without persistence by default (``--save '' --appendonly no``); ``durable=True`` turns on the
append-only file with an fsync per write, the setting under which a restart loses no count.
``tls=True`` serves TLS only, with a certificate for 127.0.0.1 signed by a CA made for the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from harness import Process, free_port


def redis_server_binary() -> str:
    """The redis-server binary; skips the test when it is missing, unless CI is set (then fails)."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed (scripts/install-system-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


# What Python's strict verification (3.13+) asks of a server certificate.
SERVER_EXTENSIONS = b"""subjectAltName=IP:127.0.0.1
authorityKeyIdentifier=keyid,issuer
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
"""


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for IP 127.0.0.1, server key), made with openssl."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=intercept test CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", "/dev/stdin"],
    ):
        subprocess.run(["openssl", *map(str, args)], input=SERVER_EXTENSIONS, check=True, capture_output=True,
                       timeout=60)
    return ca, cert, key


def _ping(port: int, tls: ssl.SSLContext | None) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
        with tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")


def wait_ready(port: int, proc: Process, tls: ssl.SSLContext | None = None, timeout: float = 20.0) -> None:
    """Until the server answers PING (it may refuse commands while loading its data)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.proc.returncode}:\n{proc.output()}")
        try:
            if _ping(port, tls):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"redis-server on 127.0.0.1:{port} not ready after {timeout}s:\n{proc.output()}")


class RedisServer:
    def __init__(self, directory: Path, *, durable: bool = False, tls: bool = False):
        self.binary = redis_server_binary()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.durable = durable
        self.tls_files = make_tls_files(self.dir) if tls else None
        self.starts = 0
        self.process: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        if self.tls_files:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls_files[0]}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.proc.pid

    def start(self) -> None:
        """Start (again, on the same port and directory)."""
        persistence = ("--appendonly", "yes", "--appendfsync", "always") if self.durable else ("--appendonly", "no")
        listen: tuple[str, ...] = ("--port", str(self.port))
        client_tls = None
        if self.tls_files:
            ca, cert, key = map(str, self.tls_files)
            listen = ("--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key,
                      "--tls-ca-cert-file", ca, "--tls-auth-clients", "no")
            client_tls = ssl.create_default_context(cafile=ca)
        self.starts += 1
        self.process = Process(
            [self.binary, "--bind", "127.0.0.1", *listen, "--dir", str(self.dir),
             "--save", "", *persistence, "--logfile", ""],
            self.dir / f"redis-{self.port}-{self.starts}.log", cwd=self.dir)
        try:
            wait_ready(self.port, self.process, client_tls)
        except BaseException:
            self.process.stop()  # never leave a server behind that no test will stop
            raise

    def kill(self) -> None:
        """A crash: SIGKILL, nothing flushed beyond what the server already wrote."""
        assert self.process is not None
        os.kill(self.pid, signal.SIGKILL)
        self.process.proc.wait(timeout=10)
        self.process.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
