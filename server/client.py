"""A minimal HTTP client for a running LogSense server (standard library only).

For scripts and tests that talk to a real `logsense serve` over loopback: the load test, the
restart test. `call` answers (status, JSON body) and never raises for a 4xx/5xx; `ok` raises.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """JSON over HTTP to `http://127.0.0.1:{port}` with an `X-API-Key`."""

    def __init__(self, port: int, key: str, timeout: float = 600):
        self.base, self.key, self.timeout = f"http://127.0.0.1:{port}", key, timeout

    def call(self, method: str, path: str, body: dict | None = None, timeout: float | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"X-API-Key": self.key, "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def ok(self, method: str, path: str, body: dict | None = None) -> Any:
        """The JSON answer of a 2xx; RuntimeError with the status and body otherwise."""
        code, out = self.call(method, path, body)
        if code >= 300:
            raise RuntimeError(f"{method} {path}: {code} {out}")
        return out

    def text(self, path: str) -> str:
        """A GET's body as text (e.g. /metrics); RuntimeError for a non-2xx."""
        req = urllib.request.Request(self.base + path, headers={"X-API-Key": self.key})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"GET {path}: {e.code}") from None

    def wait_ready(self, alive=lambda: True, timeout: float = 180) -> float:  # noqa: ANN001
        """Poll /readyz until 200; seconds waited. `alive()` False (the server exited) fails at once."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not alive():
                raise RuntimeError("the server exited before it was ready")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s")
