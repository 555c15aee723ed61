"""The reports service (reports/server.py) against hostile requests: a link opens its one path only; traversal,
encoded dots, symbolic links out of the folder, folders and non-report files are refused even with the managers'
login; unsigned is 401, a wrong or borrowed signature 403; nothing is writable; a signature never reaches the log.
The server runs in this process (a thread), as the stack runs it in its own."""

from __future__ import annotations

import base64
import http.client
import io
import os
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from smo_labelstudio.core.reportlinks import REPORTS_KEY, is_report_path, signature, signed_link, url_path
from smo_labelstudio.reports.links import DESCRIPTION_PREFIX, described, report_links
from smo_labelstudio.reports.server import make_server

WS = "demo-0123abcd"
QUALITY = "quality-20261130T120000123456Z"
LOGIN = ("manager", "s3cret-pass")


@dataclass
class Served:
    home: Path
    url: str
    key: bytes

    def signed(self, relative: str) -> str:
        path = url_path(WS, relative)
        return f"{self.url}{path}?sig={signature(self.key, path)}"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    home = tmp_path / "home"
    ws = home / "workspaces" / WS
    reports = ws / "reports"
    (reports / QUALITY).mkdir(parents=True)
    (reports / QUALITY / "report.html").write_text("<h1>Quality</h1>")
    (reports / QUALITY / "gold-accuracy.png").write_bytes(b"\x89PNG fake")
    (reports / "quality-20261201T000000000000Z").mkdir()
    (reports / "quality-20261201T000000000000Z" / "report.html").write_text("<h1>Newest</h1>")
    (reports / "scorecards" / "pages").mkdir(parents=True)
    (reports / "scorecards" / "index.html").write_text("a@x.org -> annotator-aaaa1111")
    (reports / "scorecards" / "pages" / "annotator-aaaa1111.html").write_text("<h1>A's page</h1>")
    (reports / "scorecards" / "pages" / "annotator-bbbb2222.html").write_text("<h1>B's page</h1>")
    (ws / "gold").mkdir()
    (ws / "gold" / "answers.parquet").write_bytes(b"GOLD")
    (ws / "tables").mkdir()
    (ws / "tables" / "labels.parquet").write_bytes(b"LABELS")
    server = make_server(home, "127.0.0.1", 0, LOGIN)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("SMO_REPORTS_URL", url)
    try:
        yield Served(home, url, bytes.fromhex((home / REPORTS_KEY).read_text()))
    finally:
        server.shutdown()
        server.server_close()


HTTP = httpx.Client(timeout=10)  # one client: making one per request costs more than the request


def get(url: str, **kwargs) -> httpx.Response:
    return HTTP.get(url, **kwargs)


def test_a_signed_link_opens_its_report_with_a_strict_policy(served):
    resp = get(served.signed(f"{QUALITY}/report.html"))
    assert resp.status_code == 200 and resp.text == "<h1>Quality</h1>"
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["x-content-type-options"] == "nosniff"
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["referrer-policy"] == "no-referrer"
    png = get(served.signed(f"{QUALITY}/gold-accuracy.png"))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    # what the flows build: the same link
    link = signed_link(served.home / "workspaces" / WS / "reports" / QUALITY / "report.html", served.home)
    assert link == served.signed(f"{QUALITY}/report.html")


def test_unsigned_is_a_login_prompt_and_a_wrong_or_borrowed_signature_is_403(served):
    good = served.signed(f"{QUALITY}/report.html")
    unsigned = good.split("?")[0]
    resp = get(unsigned)
    assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Basic")
    assert get(unsigned, auth=("manager", "wrong")).status_code == 401
    assert get(unsigned, auth=("Manager", LOGIN[1])).status_code == 401
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert get(tampered).status_code == 403
    assert get(unsigned + "?sig=").status_code == 403
    assert get(good + "&sig=" + good.rsplit("=", 1)[1]).status_code == 403  # two signatures: refused
    # annotator A's signature does not open B's page, nor the PM's index, nor a report
    a_link = served.signed("scorecards/pages/annotator-aaaa1111.html")
    assert get(a_link).text == "<h1>A's page</h1>"
    a_sig = a_link.rsplit("=", 1)[1]
    for other in ("scorecards/pages/annotator-bbbb2222.html", "scorecards/index.html", f"{QUALITY}/report.html"):
        assert get(f"{served.url}{url_path(WS, other)}?sig={a_sig}").status_code == 403
    # a key of another stack signs nothing here
    foreign = signature(b"\x00" * 32, url_path(WS, f"{QUALITY}/report.html"))
    assert get(f"{unsigned}?sig={foreign}").status_code == 403


def test_the_managers_login_opens_reports_and_the_newest_quality_report(served):
    assert get(served.url + url_path(WS, "scorecards/index.html"), auth=LOGIN).status_code == 200
    latest = get(f"{served.url}/w/{WS}/latest/quality", auth=LOGIN)
    assert latest.status_code == 200 and latest.text == "<h1>Newest</h1>"
    assert get(f"{served.url}/w/{WS}/latest/quality").status_code == 401
    assert get(f"{served.url}/w/{WS}/latest/ops", auth=LOGIN).status_code == 404  # none yet
    # a `latest` page is never opened by a signature (it would follow the folder, not one file)
    path = f"/w/{WS}/latest/quality"
    assert get(f"{served.url}{path}?sig={signature(served.key, path)}").status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        f"/w/{WS}/../{WS}/reports/{QUALITY}/report.html",
        f"/w/{WS}/{QUALITY}/../../gold/answers.parquet",
        f"/w/{WS}/%2e%2e/gold/answers.parquet",
        f"/w/{WS}/{QUALITY}/%2e%2e%2f%2e%2e%2fgold%2fanswers.parquet",
        f"/w/{WS}/{QUALITY}%2freport.html",
        f"/w/{WS}//{QUALITY}/report.html",
        f"/w/{WS}/{QUALITY}\\report.html",
        f"/w/{WS}/gold/answers.parquet",
        f"/w/{WS}/tables/labels.parquet",
        f"/w/{WS}/{QUALITY}/",
        f"/w/{WS}/{QUALITY}",
        f"/w/{WS}/",
        f"/w/{WS}/scorecards/pages/",
        "/w/",
        "/",
        f"/w/{WS}/reports/{QUALITY}/report.html",
        f"/w/..%2f..%2fkeys/{QUALITY}/report.html",
        f"/w/{WS}/{QUALITY}/report.html%00.png",
        "/keys/reports.key",
        "/stack.json",
    ],
)
def test_traversal_folders_and_other_files_are_refused_even_logged_in(served, path):
    """Sent byte for byte (http.client: no client-side clean-up of dot segments)."""
    host, port = served.url.removeprefix("http://").split(":")
    basic = base64.b64encode(":".join(LOGIN).encode()).decode()
    for query in ("", f"?sig={signature(served.key, path)}"):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", path + query, headers={"Authorization": f"Basic {basic}"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status in (400, 404), (path, resp.status)
        assert b"GOLD" not in body and b"LABELS" not in body


def test_symbolic_links_out_of_the_folder_are_refused(served, tmp_path):
    reports = served.home / "workspaces" / WS / "reports"
    outside = tmp_path / "secret.html"
    outside.write_text("SECRET")
    stamped = reports / "ops-20261130T120000000000Z"
    stamped.mkdir()
    (stamped / "report.html").symlink_to(outside)
    (stamped / "summary.json").symlink_to(served.home / "workspaces" / WS / "gold" / "answers.parquet")
    (reports / "datasheet").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "datasheet.md").write_text("SECRET")
    other = served.home / "workspaces" / "linked-ws"
    other.symlink_to(served.home / "workspaces" / WS, target_is_directory=True)
    for target in (
        url_path(WS, "ops-20261130T120000000000Z/report.html"),
        url_path(WS, "ops-20261130T120000000000Z/summary.json"),
        url_path(WS, "datasheet/datasheet.md"),
        url_path("linked-ws", f"{QUALITY}/report.html"),
    ):
        resp = get(f"{served.url}{target}?sig={signature(served.key, target)}")
        assert resp.status_code == 404, (target, resp.status_code)
        assert get(served.url + target, auth=LOGIN).status_code == 404
    assert signed_link(stamped / "report.html", served.home) is None  # resolves outside: no link is made


def test_read_only_and_the_log_never_shows_a_signature(served):
    good = served.signed(f"{QUALITY}/report.html")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert HTTP.request(method, good, content=b"x", auth=LOGIN).status_code == 405
    assert HTTP.head(good).status_code == 200
    log = io.StringIO()
    with redirect_stderr(log):
        get(good)
        get(good[:-2] + "00")
    sig = good.rsplit("=", 1)[1]
    assert log.getvalue() and sig not in log.getvalue() and sig[:-2] not in log.getvalue()


def test_only_report_shapes_are_report_paths(served):
    assert is_report_path(WS, f"{QUALITY}/report.html") and is_report_path(WS, "datasheet/datasheet.md")
    for bad in (
        "../gold/answers.parquet",
        f"{QUALITY}/../x.html",
        "quality-x/report.html",
        f"{QUALITY}/report.htm",
        f"{QUALITY}/<script>.png",
        "scorecards/pages/annotator-AAAA.html",
        "scorecards/pages/someone@x.org.html",
    ):
        assert not is_report_path(WS, bad), bad
    assert not is_report_path("../x", f"{QUALITY}/report.html") and not is_report_path("A", f"{QUALITY}/report.html")
    assert signed_link(served.home / "workspaces" / WS / "gold" / "answers.parquet", served.home) is None
    links = report_links(_ws(served), served.home)
    assert set(links) == {"Quality report", "Scorecards (index)"}
    assert "20261201T" in links["Quality report"]  # the newest


def _ws(served):
    from smo_labelstudio.core.workspace import Workspace

    return Workspace(served.home / "workspaces" / WS)


def test_the_description_keeps_one_link_line_and_whatever_members_wrote():
    hostile = f'Read the guide <a href="javascript:x">here</a>\n{DESCRIPTION_PREFIX}http://evil.example/phish\n\n'
    once = described(hostile, "http://127.0.0.1:4280/w/demo-0123abcd/latest/quality")
    assert once.count(DESCRIPTION_PREFIX) == 1 and "evil.example" not in once
    assert once.startswith("Read the guide") and once.endswith("/latest/quality")
    assert described(once, "http://127.0.0.1:4280/w/demo-0123abcd/latest/quality") == once
    assert described("", "L") == DESCRIPTION_PREFIX + "L"
    assert os.sep not in DESCRIPTION_PREFIX
