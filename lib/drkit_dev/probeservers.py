"""Real HTTP and HTTPS servers on 127.0.0.1 for the probe tests (and the probe benchmark)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Behaviour:
    """Shared, mutable: tests flip endpoints between runs."""

    def __init__(self) -> None:
        self.health_status = 200
        self.requests = 0
        self.delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0  # proves concurrency without timing anything
        self.lock = threading.Lock()


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no access log, one way to answer with a body (the local stand-ins share it)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def make_handler(b: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):

        def do_GET(self) -> None:
            with b.lock:
                b.requests += 1
                b.in_flight += 1
                b.max_in_flight = max(b.max_in_flight, b.in_flight)
            try:
                self._route()
            finally:
                with b.lock:
                    b.in_flight -= 1

        def _route(self) -> None:
            if b.delay_s:
                time.sleep(b.delay_s)
            path = self.path.split("?")[0]
            if path == "/health":
                self._send(b.health_status, json.dumps({"status": "UP" if b.health_status == 200 else "DOWN",
                                                        "db": {"ok": True}}).encode(),
                           {"Content-Type": "application/json"})
            elif path == "/slow":
                time.sleep(2.0)
                self._send(200, b"late")
            elif path == "/redirect":
                self._send(302, b"", {"Location": "/health"})
            elif path == "/loop":
                self._send(302, b"", {"Location": "/loop"})
            elif path == "/needs-header":
                ok = self.headers.get("X-Probe") == "yes"
                self._send(200 if ok else 403, b"hello" if ok else b"no")
            else:
                self._send(404, b"not found")

        do_HEAD = do_GET

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # socketserver's default listen backlog of 5 drops bursts of connections


def serve(b: Behaviour, tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    server = _Server(("127.0.0.1", 0), make_handler(b))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def self_signed(days: float, directory: Path | None = None) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a certificate for localhost/127.0.0.1 valid for `days` more days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    not_before = min(now - dt.timedelta(days=1), not_after - dt.timedelta(days=2))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    folder = Path(directory or tempfile.mkdtemp(prefix="drkit-tls-"))
    (folder / "cert.pem").write_text(pem)
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return ctx, pem


def stop(server: Any) -> None:
    server.shutdown()
    server.server_close()
