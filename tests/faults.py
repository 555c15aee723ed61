"""Helpers for the fault tests (not a test file): a misbehaving proxy in front of a real Label Studio,
and a Label Studio of a test's own that it may kill."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.services import LabelStudio, Settings

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

# A rule sees (method, path, number of the request, 1-based) and answers "forward", "stall", "delay",
# "cut" (the answer's headers and half its body, then the connection drops), "late" (504 at once, as a gateway
# that stopped waiting, and the request reaches Label Studio `stall_seconds` later), "late-drop" (the same with
# the connection closed instead of a 504, as a load balancer's idle timeout) or an error status.
Rule = Callable[[str, str, int], "str | int"]


@dataclass
class FaultyProxy:
    """Forwards to `upstream`, except where `rule` says to answer an error status or to stall (hold the
    connection past the client's timeout, then drop it). Records what it did.

    With `prefix` ("/labelstudio") it serves Label Studio under that path, as a reverse proxy of a team's
    would: the prefix is stripped before forwarding (rules see Label Studio's own paths), a request
    without it answers 404, and redirects get it back. With `tls` (a server-side SSL context) it speaks
    HTTPS, terminating TLS in front of a plain-HTTP Label Studio."""

    upstream: str
    rule: Rule
    stall_seconds: float = 5.0
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    prefix: str = ""
    tls: ssl.SSLContext | None = None
    late: list[threading.Thread] = field(default_factory=list)  # what "late" and "late-drop" forward afterwards

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
                path = self.path
                if proxy.prefix:
                    if path.split("?")[0] != proxy.prefix and not path.startswith(proxy.prefix + "/"):
                        with proxy._lock:
                            proxy.seen.append((self.command, path.split("?")[0], "404 outside the prefix"))
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    path = path[len(proxy.prefix) :] or "/"
                with proxy._lock:
                    number = len(proxy.seen) + 1
                    action = proxy.rule(self.command, path.split("?")[0], number)
                    proxy.seen.append((self.command, path.split("?")[0], str(action)))
                if action == "stall":
                    time.sleep(proxy.stall_seconds)
                    self.close_connection = True
                    return
                if action == "delay":  # slow, then the real answer
                    time.sleep(proxy.stall_seconds)
                    action = "forward"
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                if action in ("late", "late-drop"):  # the gateway gives up first; Label Studio gets it later
                    late = threading.Thread(
                        target=proxy._forward_late, args=(self.command, path, headers, body), daemon=True
                    )
                    proxy.late.append(late)
                    late.start()
                    if action == "late-drop":
                        self.close_connection = True
                        return
                    action = 504
                if action not in ("forward", "cut"):
                    payload = b'{"detail": "injected failure"}'
                    self.send_response(int(action))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                try:
                    resp = proxy._client.request(self.command, path, headers=headers, content=body)
                except (httpx.HTTPError, RuntimeError):  # upstream gone, or the proxy closed meanwhile
                    self.close_connection = True
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.multi_items():  # Set-Cookie comes once per cookie
                    if k.lower() not in HOP:
                        if k.lower() == "location" and v.startswith("/"):
                            v = proxy.prefix + v
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if action == "cut":  # the headers and half the body, then the connection drops
                    self.wfile.write(resp.content[: len(resp.content) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}{self.prefix}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _forward_late(self, method: str, path: str, headers: dict, body: bytes) -> None:
        time.sleep(self.stall_seconds)
        with contextlib.suppress(httpx.HTTPError, RuntimeError):  # upstream gone, or the proxy closed meanwhile
            self._client.request(method, path, headers=headers, content=body)

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


@contextlib.contextmanager
def label_studio_env(extra: dict[str, str]) -> Iterator[None]:
    """Start Label Studio with these variables on top of the stack's own (e.g. SSRF protection on, as a
    team's server has it): while inside, every Label Studio the stack starts gets them."""
    original = LabelStudio.environ

    def environ(self, *args, **kwargs) -> dict[str, str]:
        return {**original(self, *args, **kwargs), **extra}

    LabelStudio.environ = environ  # type: ignore[method-assign]
    try:
        yield
    finally:
        LabelStudio.environ = original  # type: ignore[method-assign]


def own_guarded_label_studio(home: Path) -> tuple[Settings, dict]:
    """A Label Studio of the test's own with 1.23's defaults for a team's server: local ML backends
    blocked (ML_BLOCK_LOCAL_IP) and SSRF protection on with the default banned subnets (no address let through,
    unlike the stack's)."""
    guarded = {
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "true",
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "true",
        "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS": "true",
        "LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS": "",
    }
    with label_studio_env(guarded):
        return own_label_studio(home)


@dataclass
class Certificates:
    """A private CA and a server certificate it signed for 127.0.0.1 (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificates(folder: Path) -> Certificates:
    """Generate a CA and a certificate for 127.0.0.1 signed by it, as a company's private CA would issue."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smo test private CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    found = Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    found.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    found.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    found.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return found
