"""A local stand-in for GitHub's archive endpoint, Grafana's HTTP API and plain file URLs (127.0.0.1).

GitHub: `GET /repos/{owner}/{repo}/tarball[/{ref}]` checks the Bearer token and
answers 302 to `http://localhost:{port}/codeload/...` (another host name, as
codeload.github.com is: the client must not forward the token there). The
codeload answer is a tar.gz generated while it is sent, chunked, without a
Content-Length, with GitHub's layout (`owner-repo-<sha7>/` top directory, a
pax global header whose comment is the commit sha). Files can be generated
content of any size (`Generated`), so a multi-gigabyte repository costs no
memory here either. `break_after` cuts the connection mid-archive.

Grafana: /api/search, /api/dashboards/uid/{uid}, /api/datasources,
/api/folders, /api/v1/provisioning/alert-rules, with its own token.
Files: /files/<name> (with Content-Length) and /chunked/<name> (without).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zlib
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .probeservers import QuietHandler


@dataclass
class Generated:
    """`size` bytes of a repeating pattern, produced on demand."""

    size: int
    pattern: bytes = b"\0"

    def reader(self) -> Any:
        return _PatternReader(self.size, self.pattern)

    def sha256(self) -> str:
        h = hashlib.sha256()
        r = self.reader()
        while chunk := r.read(1 << 20):
            h.update(chunk)
        return h.hexdigest()


class _PatternReader:
    """`size` bytes of `pattern` repeated (any pattern length), read in any chunk sizes."""

    def __init__(self, size: int, pattern: bytes):
        self.left = size
        self.pattern = pattern if len(pattern) >= 1 << 16 else pattern * ((1 << 16) // len(pattern) + 1)
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        parts = []
        want = n
        while want:
            piece = self.pattern[self.pos: self.pos + want]
            parts.append(piece)
            want -= len(piece)
            self.pos = (self.pos + len(piece)) % len(self.pattern)
        self.left -= n
        return b"".join(parts)


@dataclass
class Repo:
    files: dict[str, bytes | Generated]
    commit: str = "4f2c1d0e9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e"
    symlinks: dict[str, str] = field(default_factory=dict)
    executables: set[str] = field(default_factory=set)


@dataclass
class FakeWeb:
    github_token: str = "ghp_fake_test_token_0001"
    grafana_token: str = "glsa_fake_test_token_0001"
    repos: dict[str, Repo] = field(default_factory=dict)  # "owner/name" -> repo (any ref serves it)
    files: dict[str, bytes] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> dashboard JSON
    datasources: list[dict[str, Any]] = field(default_factory=list)
    alert_rules: list[dict[str, Any]] | None = field(default_factory=list)  # None: Grafana < 9 (404)
    break_after: int | None = None  # bytes of tar.gz after which codeload drops the connection
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeWeb:
        web = self

        class Handler(QuietHandler):
            def _json(self, code: int, obj: Any) -> None:
                self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                with web.lock:
                    web.requests.append((url.path, self.headers.get("Host", ""), dict(self.headers)))
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                if parts[:1] == ["repos"] and len(parts) >= 4 and parts[3] == "tarball":
                    return self._tarball_redirect(parts)
                if parts[:1] == ["codeload"]:
                    return self._codeload(parts)
                if parts[:1] == ["api"]:
                    return self._grafana(url.path, parse_qs(url.query))
                if parts[:1] in (["files"], ["chunked"]) and len(parts) == 2 and parts[1] in web.files:
                    if parts[0] == "files":
                        return self._send(200, web.files[parts[1]], {"Content-Type": "text/plain"})
                    return self._chunked([web.files[parts[1]]])
                self._json(404, {"message": "Not Found"})

            def _tarball_redirect(self, parts: list[str]) -> None:
                if self.headers.get("Authorization") != f"Bearer {web.github_token}":
                    return self._json(401, {"message": "Bad credentials"})
                repo = f"{parts[1]}/{parts[2]}"
                if repo not in web.repos:
                    return self._json(404, {"message": "Not Found"})
                ref = parts[4] if len(parts) > 4 else "main"
                port = web.port
                self._send(302, b"", {"Location": f"http://localhost:{port}/codeload/{repo}/tar.gz/{ref}"})

            def _codeload(self, parts: list[str]) -> None:
                repo = web.repos.get(f"{parts[1]}/{parts[2]}")
                if repo is None:
                    return self._json(404, {"message": "Not Found"})
                self._chunked(_tar_gz(f"{parts[1]}-{parts[2]}-{repo.commit[:7]}", repo), web.break_after)

            def _chunked(self, chunks: Any, break_after: int | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-gzip")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = 0
                for chunk in chunks:
                    if not chunk:
                        continue
                    if break_after is not None and sent + len(chunk) > break_after:
                        chunk = chunk[: max(0, break_after - sent)]
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    sent += len(chunk)
                self.wfile.write(b"0\r\n\r\n")

            def _grafana(self, path: str, query: dict[str, list[str]]) -> None:
                if self.headers.get("Authorization") != f"Bearer {web.grafana_token}":
                    return self._json(401, {"message": "invalid API key"})
                if path == "/api/search":
                    limit, page = int(query.get("limit", ["1000"])[0]), int(query.get("page", ["1"])[0])
                    hits = [{"uid": uid, "title": d["title"], "type": "dash-db", "folderTitle": d.get("folder", "Ops")}
                            for uid, d in sorted(web.dashboards.items())]
                    return self._json(200, hits[(page - 1) * limit: page * limit])
                if path.startswith("/api/dashboards/uid/"):
                    uid = unquote(path.rsplit("/", 1)[1])
                    if uid not in web.dashboards:
                        return self._json(404, {"message": "Dashboard not found"})
                    return self._json(200, {"dashboard": web.dashboards[uid], "meta": {"folderTitle": "Ops"}})
                if path == "/api/datasources":
                    return self._json(200, web.datasources)
                if path == "/api/folders":
                    return self._json(200, [{"id": 1, "uid": "ops", "title": "Ops"}])
                if path == "/api/v1/provisioning/alert-rules":
                    if web.alert_rules is None:
                        return self._json(404, {"message": "Not found"})
                    return self._json(200, web.alert_rules)
                self._json(404, {"message": "Not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def codeload_auth_headers(self) -> list[str]:
        """Authorization headers that reached codeload (must be none)."""
        return [h["Authorization"] for p, _, h in self.requests if p.startswith("/codeload/") and "Authorization" in h]


class _Spool(io.RawIOBase):
    """What tarfile writes, handed out in pieces as it comes (no whole-archive buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[bytes] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.written

    def write(self, b: Any) -> int:
        self.pending.append(bytes(b))
        self.written += len(b)
        return len(b)

    def take(self) -> bytes:
        out = b"".join(self.pending)
        self.pending = []
        return out


def _tar_gz(top: str, repo: Repo) -> Any:
    """Yield the gzip-compressed tar of `repo` piece by piece (mode "w": tarfile writes straight through)."""
    spool = _Spool()
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": repo.commit}) as tar:
        dirs = sorted({"/".join(p.split("/")[:i]) for p in [*repo.files, *repo.symlinks] for i in range(1, p.count("/") + 1)})
        for d in ["", *dirs]:
            info = tarfile.TarInfo(f"{top}/{d}".rstrip("/") + "/")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        yield gz.compress(spool.take())
        for path, content in sorted(repo.files.items()):
            info = tarfile.TarInfo(f"{top}/{path}")
            info.mode = 0o755 if path in repo.executables else 0o644
            if isinstance(content, Generated):
                info.size = content.size
                spool.write(info.tobuf(tar.format, tar.encoding, tar.errors))
                yield gz.compress(spool.take())
                reader, left = content.reader(), content.size
                while left:
                    chunk = reader.read(min(1 << 20, left))
                    left -= len(chunk)
                    yield gz.compress(chunk)
                pad = bytes((-content.size) % tarfile.BLOCKSIZE)
                yield gz.compress(pad)
                spool.written += content.size + len(pad)
                tar.offset = spool.written  # tarfile's own bookkeeping, for the members after this one
                continue
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
            yield gz.compress(spool.take())
        for path, target in sorted(repo.symlinks.items()):
            info = tarfile.TarInfo(f"{top}/{path}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
            yield gz.compress(spool.take())
    yield gz.compress(spool.take()) + gz.flush()
