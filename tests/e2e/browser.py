"""A real browser for page tests: Debian's headless Chromium (``apt-get install
chromium``; ``.ci/run`` installs it), fresh profile each time, waiting for the page's
own requests (``--virtual-time-budget``) before it reads the DOM or takes a screenshot.

A page behind basic auth is reached through a loopback proxy that adds the header, as a
browser that was given the password sends it on every request (Chromium drops
credentials written into a URL for the page's own requests).
"""

from __future__ import annotations

import base64
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _AuthProxy(http.server.BaseHTTPRequestHandler):
    upstream = ""
    authorization = ""

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
        answer = httpx.request(
            self.command,
            f"{self.upstream}{self.path}",
            content=body or None,
            headers=headers | {"Authorization": self.authorization},
            timeout=10,
        )
        self.send_response(answer.status_code)
        if "content-type" in answer.headers:
            self.send_header("Content-Type", answer.headers["content-type"])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = _forward
    do_POST = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _reachable(base_url: str, auth: tuple[str, str] | None) -> Iterator[str]:
    if auth is None:
        yield base_url
        return
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    handler = type(
        "Proxy", (_AuthProxy,), {"upstream": base_url, "authorization": f"Basic {token}"}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Page:
    dom: str
    screenshot: Path


def browse(
    base_url: str,
    path: str,
    folder: Path,
    *,
    auth: tuple[str, str] | None = None,
    size: str = "1920,1000",
    wait_ms: int = 8000,
) -> Page:
    """The page as Chromium shows it once its data has loaded: a screenshot (taken
    first: the moment it shows) and the DOM."""
    assert CHROMIUM, "chromium is not installed (apt-get install chromium)"
    screenshot = folder / "page.png"
    with _reachable(base_url, auth) as reachable:
        url = f"{reachable}{path}"
        common = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--hide-scrollbars", f"--window-size={size}",
            f"--virtual-time-budget={wait_ms}",
        ]  # fmt: skip
        subprocess.run(
            [
                *common,
                f"--user-data-dir={folder / 'profile-shot'}",
                f"--screenshot={screenshot}",
                url,
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        dom = subprocess.run(
            [*common, f"--user-data-dir={folder / 'profile-dom'}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    return Page(dom, screenshot)
