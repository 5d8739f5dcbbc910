"""An HTTP/1.1 server that logs how each request named its server: one JSON line per request
(request target, Host field, body) in --log, then a JSON-RPC result. For red-team tests of
which names the proxy judges against what a server routes by. ``--tls`` serves HTTPS with a
fresh self-signed certificate (mitmproxy then needs ``ssl_insecure``)."""

import argparse
import asyncio
import datetime
import json
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(where: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (where / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (where / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(where / "cert.pem", where / "key.pem")
    return context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
            target = head.split(" ")[1]
            fields = [line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line]
            hosts = [value.strip() for name, value in fields if name.lower() == "host"]
            length = next((int(value) for name, value in fields if name.lower() == "content-length"), 0)
            body = (await reader.readexactly(length)).decode(errors="replace")
            with open(args.log, "a") as f:
                f.write(json.dumps({"target": target, "host": hosts, "body": body}) + "\n")
            answer = b'{"jsonrpc":"2.0","id":1,"result":{"content":[]}}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, IndexError, ValueError):
            pass
        finally:
            writer.close()

    async def run() -> None:
        context = self_signed(Path(tempfile.mkdtemp())) if args.tls else None
        server = await asyncio.start_server(serve, "127.0.0.1", args.port, ssl=context)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
