"""An HTTP proxy on 127.0.0.1 in front of the S3 server that injects faults.

Rules match on method and a substring of the path+query; a matching request
is answered with the given status (S3-style XML error) instead of being
forwarded, `times` times (None = always); with `after_forward` it is forwarded
first and its answer replaced by that error (the write happened, the answer was
lost). `delay` holds every request that long (a slow bucket). Everything else
is forwarded.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Rule:
    method: str
    contains: str
    status: int = 500
    times: int | None = None
    hits: int = 0
    after_forward: bool = False

    def take(self, method: str, path: str) -> bool:
        if method != self.method or self.contains not in path:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    strip_headers: tuple[str, ...] = ()  # e.g. ("if-none-match",): a store that ignores conditional writes
    seen: list[str] = field(default_factory=list)
    slow: tuple[str, float] | None = None  # (path substring, seconds per 16 KiB): a slow download
    sent: int = 0  # body bytes of slow downloads sent so far
    delay: float = 0.0  # seconds every request waits (a slow bucket)

    def start(self) -> FaultProxy:
        target = urlsplit(self.upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append(f"{self.command} {self.path}")
                if proxy.delay:
                    time.sleep(proxy.delay)
                for rule in proxy.rules:
                    if rule.take(self.command, self.path):
                        if rule.after_forward:
                            self._forward(body, answer=False)
                        code = {500: "InternalError", 503: "SlowDown"}.get(rule.status, "InjectedFault")
                        err = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
                        data = err.encode()
                        self.send_response(rule.status)
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                self._forward(body, answer=True)

            def _forward(self, body: bytes, answer: bool) -> None:
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", *proxy.strip_headers)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if not answer:
                    conn.close()
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "GET" and proxy.slow is not None and proxy.slow[0] in self.path:
                    for i in range(0, len(data), 16384):
                        self.wfile.write(data[i:i + 16384])
                        self.wfile.flush()
                        proxy.sent += len(data[i:i + 16384])
                        time.sleep(proxy.slow[1])
                elif self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
