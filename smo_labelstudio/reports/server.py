"""The stack's `reports` service: serves the report files of the workspaces under SMO_HOME, read-only, over HTTP.

`python -m smo_labelstudio.reports.server --host 127.0.0.1 --port 4280` (the stack starts it; stdlib http.server,
no framework: it starts in well under a second). What it serves and how a request is let in:

- only files whose path has a report's shape (core/reportlinks.py: `/w/<workspace>/<path under reports/>`), GET
  and HEAD only, regular files only: a path with `..`, a symbolic link anywhere under the workspace, a folder or
  any other file (gold answers, tables, keys) is 404, and no folder is ever listed;
- a request carrying `?sig=` is let in when the signature is this exact path's (a wrong one: 403); without one it
  needs the managers' login (HTTP Basic, `SMO_REPORTS_USER` / `SMO_REPORTS_PASSWORD` from the stack's state):
  401 otherwise. The login also opens `/w/<workspace>/latest/quality` and `/latest/ops`, the newest report;
- every answer carries `X-Content-Type-Options: nosniff`, a Content-Security-Policy without scripts (images from
  `data:` only), `Referrer-Policy: no-referrer` (a signature never leaves in a Referer) and `Cache-Control:
  no-store`; the log shows paths without their query.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import os
import stat
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from smo_labelstudio.core.reportlinks import LATEST, WORKSPACE_NAME, is_report_path, load_key, signature_ok
from smo_labelstudio.reports.safe import CSP

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
}
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP + "; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ReportsHandler(BaseHTTPRequestHandler):
    """One request: check the path's shape and the credential, then send the one file (or a refusal)."""

    server_version = "smo-reports"
    sys_version = ""
    home: Path
    key: bytes
    login: tuple[str, str] | None

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._answer(body=False)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only\n", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Access log without queries (a signature is a credential for its path)."""
        line = format % args
        sys.stderr.write(f"{self.address_string()} {line.replace(self.path, urlsplit(self.path).path)}\n")

    # -- the request --------------------------------------------------------------------------
    def _answer(self, body: bool) -> None:
        parts = urlsplit(self.path)
        raw = parts.path
        if raw == "/health":
            self._send(HTTPStatus.OK, b"ok\n", body=body)
            return
        target = self._target(raw)
        if target is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", body=body)
            return
        sigs = parse_qs(parts.query, keep_blank_values=True).get("sig")
        if sigs is not None:
            if len(sigs) != 1 or not target[2] or not signature_ok(self.key, raw, sigs[0]):
                self._send(HTTPStatus.FORBIDDEN, b"forbidden: this link is not signed for this path\n", body=body)
                return
        elif not self._logged_in():
            self._send(
                HTTPStatus.UNAUTHORIZED,
                b"login required: the managers' login, or a signed link\n",
                extra={"WWW-Authenticate": 'Basic realm="smo reports", charset="UTF-8"'},
                body=body,
            )
            return
        workspace, relative, _ = target
        if relative is None:  # /latest/<kind>
            relative = self._latest(workspace, raw.rsplit("/", 1)[1])
            if relative is None:
                self._send(HTTPStatus.NOT_FOUND, b"no report of this kind yet\n", body=body)
                return
        self._send_file(workspace, relative, body)

    def _target(self, raw: str) -> tuple[str, str | None, bool] | None:
        """(workspace, path under reports/ or None for a `latest` page, signable) from the URL path; None: not ours."""
        if "%" in raw or "\\" in raw or "//" in raw:
            return None  # anything encoded, back-slashes, empty segments: never a link we make
        path = unquote(raw)
        segments = path.split("/")
        if len(segments) < 4 or segments[0] != "" or segments[1] != "w" or any(s in (".", "..") for s in segments):
            return None
        workspace, relative = segments[2], "/".join(segments[3:])
        if not WORKSPACE_NAME.match(workspace):
            return None
        if len(segments) == 5 and segments[3] == "latest" and segments[4] in LATEST:
            return workspace, None, False
        return (workspace, relative, True) if is_report_path(workspace, relative) else None

    def _logged_in(self) -> bool:
        header = self.headers.get("Authorization", "")
        if self.login is None or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), self.login[0].encode())
        return hmac.compare_digest(password.encode(), self.login[1].encode()) and ok_user

    def _reports_dir(self, workspace: str) -> Path:
        return self.home / "workspaces" / workspace / "reports"

    def _latest(self, workspace: str, kind: str) -> str | None:
        folder = self._reports_dir(workspace)
        try:
            names = sorted(n for n in os.listdir(folder) if n.startswith(f"{kind}-"))
        except OSError:
            return None
        for name in reversed(names):
            relative = f"{name}/report.html"
            if is_report_path(workspace, relative) and (folder / relative).is_file():
                return relative
        return None

    def _open(self, workspace: str, relative: str) -> int | None:
        """A read-only descriptor of the file, following no symbolic link from the workspaces folder down."""
        fd = os.open(self.home / "workspaces", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in [workspace, "reports", *relative.split("/")[:-1]]:
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            found = os.open(relative.split("/")[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(found).st_mode):
            os.close(found)
            return None
        return found

    def _send_file(self, workspace: str, relative: str, body: bool) -> None:
        fd = self._open(workspace, relative)
        if fd is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", body=body)
            return
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        self._send(HTTPStatus.OK, data, content_type=TYPES[Path(relative).suffix], body=body)

    def _send(
        self,
        status: HTTPStatus,
        data: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
        body: bool = True,
    ) -> None:
        self.send_response(status)
        for name, value in {**HEADERS, **(extra or {}), "Content-Type": content_type}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


def make_server(home: Path, host: str, port: int, login: tuple[str, str] | None) -> ThreadingHTTPServer:
    """The server (not yet serving) for the workspaces under `home`, the key made if missing."""
    handler = type(
        "Handler", (ReportsHandler,), {"home": Path(home).resolve(), "key": load_key(Path(home)), "login": login}
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    """Serve until stopped; SMO_HOME names the home, SMO_REPORTS_USER / SMO_REPORTS_PASSWORD the managers' login."""
    parser = argparse.ArgumentParser(prog="smo-reports")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    home = Path(os.environ.get("SMO_HOME") or ".smo")
    user, password = os.environ.get("SMO_REPORTS_USER", ""), os.environ.get("SMO_REPORTS_PASSWORD", "")
    server = make_server(home, args.host, args.port, (user, password) if user and password else None)
    sys.stderr.write(f"serving reports of {home} on http://{args.host}:{args.port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
