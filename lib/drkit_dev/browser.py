"""Headless Chromium (Debian's `chromium`) on pages served from 127.0.0.1: screenshot, DOM, every request, console.

Every URL the browser asks for is read from its own network log (`--log-net-log`), so a page that
loads anything from elsewhere is caught even when the load fails; console messages come from
Chromium's log on stderr.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--no-default-browser-check", "--disable-features=Translate,MediaRouter,OptimizationHints"]


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass(frozen=True)
class Visit:
    dom: str
    requests: list[str]  # every URL the browser requested
    console: list[str]  # console messages (errors, CSP refusals, …)
    screenshot: Path

    def foreign(self, origin: str) -> list[str]:
        return [u for u in self.requests if u.startswith(("http:", "https:", "ws:", "wss:"))
                and not u.startswith(origin)]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@functools.lru_cache(maxsize=1)
def _chromium_works() -> bool:
    exe = executable()
    if not exe:
        return False
    try:
        return subprocess.run([exe, "--version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def available() -> bool:
    return _chromium_works()


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    exe = executable()
    assert exe is not None
    return subprocess.run([exe, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)


def visit(folder: Path, page: str, screenshot: Path, size: tuple[int, int], timeout: float = 90) -> Visit:
    """Serve `folder` on 127.0.0.1 and open `page` in it twice: a screenshot (with the net log and the
    console) and the DOM after load."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="drkit-chromium-") as tmp:
            netlog = Path(tmp) / "net.json"
            shot = _run([f"--user-data-dir={tmp}/profile", f"--window-size={size[0]},{size[1]}",
                         f"--screenshot={screenshot}", f"--log-net-log={netlog}", "--net-log-capture-mode=Default",
                         "--enable-logging=stderr", "--v=0", url], timeout)
            assert screenshot.exists(), f"chromium wrote no screenshot: {shot.stderr[-2000:]}"
            dom = _run([f"--user-data-dir={tmp}/profile2", "--dump-dom", url], timeout)
            origin = f"http://127.0.0.1:{server.server_address[1]}"
            requests = _page_urls(netlog.read_text(errors="replace") if netlog.exists() else "", origin)
    finally:
        server.shutdown()
        server.server_close()
    console = [ln for ln in shot.stderr.splitlines() if "CONSOLE" in ln or "Refused to" in ln]
    return Visit(dom.stdout, requests, console, screenshot)


def _page_urls(netlog: str, origin: str) -> list[str]:
    """The URLs the page asked for: its main frame, and every request the page's origin initiated (Chromium's
    own background traffic, initiated by no origin, is not the page's)."""
    text = netlog.rstrip()
    if not text.endswith("}"):  # a log cut short at exit: close it
        text = text.rstrip(",") + "]}"
    try:
        events = json.loads(text).get("events", [])
    except json.JSONDecodeError:
        events = []
    found = set()
    for ev in events:
        params = ev.get("params") if isinstance(ev, dict) else None
        if not isinstance(params, dict) or "url" not in params or "initiator" not in params:
            continue
        if params["initiator"] == origin or params.get("request_type") == "main frame":
            found.add(str(params["url"]))
    return sorted(u for u in found if urlsplit(u).scheme in ("http", "https", "ws", "wss", "ftp"))
