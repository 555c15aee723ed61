"""Helpers for the fault tests (not a test file): a misbehaving proxy in front of a real Label Studio,
and a Label Studio of a test's own that it may kill."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.services import Settings

HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "date",
    "server",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
}

# A rule sees (method, path, number of the request, 1-based) and answers "forward", "stall", "delay" or
# an error status.
Rule = Callable[[str, str, int], "str | int"]


@dataclass
class FaultyProxy:
    """Forwards to `upstream`, except where `rule` says to answer an error status or to stall (hold the
    connection past the client's timeout, then drop it). Records what it did."""

    upstream: str
    rule: Rule
    stall_seconds: float = 5.0
    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self):
        proxy = self
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.upstream, timeout=600)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    number = len(proxy.seen) + 1
                    action = proxy.rule(self.command, self.path.split("?")[0], number)
                    proxy.seen.append((self.command, self.path.split("?")[0], str(action)))
                if action == "stall":
                    time.sleep(proxy.stall_seconds)
                    self.close_connection = True
                    return
                if action == "delay":  # slow, then the real answer
                    time.sleep(proxy.stall_seconds)
                    action = "forward"
                if action != "forward":
                    payload = b'{"detail": "injected failure"}'
                    self.send_response(int(action))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                try:
                    resp = proxy._client.request(self.command, self.path, headers=headers, content=body)
                except (httpx.HTTPError, RuntimeError):  # upstream gone, or the proxy closed meanwhile
                    self.close_connection = True
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def failures(self) -> int:
        return sum(1 for _m, _p, action in self.seen if action != "forward")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._client.close()


def own_label_studio(home: Path) -> tuple[Settings, dict]:
    """A Label Studio of the test's own (SQLite, from the cached template), so it can be killed."""
    settings = Settings(
        home=home,
        ls_port=procs.free_port(),
        prefect_port=procs.free_port(),
        backend_port=procs.free_port(),
        ls_workers=2,
    )
    state = stack.up(settings, lambda _m: None, only=("label-studio",))
    return settings, state


def kill_label_studio(settings: Settings) -> None:
    """SIGKILL its whole process group (no graceful shutdown), as a crash or an OOM kill would."""
    import os
    import signal

    record = stack.load_state(settings.home)["services"]["label-studio"]
    os.killpg(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and procs.alive(record):
        try:
            os.waitpid(record["pid"], os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)


def restart_label_studio(settings: Settings) -> dict:
    """Start it again on the same data folder and port."""
    return stack.up(settings, lambda _m: None, only=("label-studio",))


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
