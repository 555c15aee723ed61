"""Reports by URL on the real components: the stack's `reports` service (started by `smo stack up`'s code), the
quality-check flow on the real Prefect API, the real Label Studio. The report link read back from the flow run's
artifact opens in headless Chromium and shows the report (its heading, its plots decoded); a tampered link is
refused; the project's description links the newest quality report behind the managers' login."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
from test_ops_report import ARTIFACTS, CHROMIUM, FLAGS, _spec, _workspace

from smo_labelstudio.core.state import load_state
from smo_labelstudio.core.workspace import workspace_key, write_json
from smo_labelstudio.reports.links import DESCRIPTION_PREFIX
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack import procs
from smo_labelstudio.stack.services import Settings


def _artifacts(flow_run_id) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list:
        async with get_client() as c:
            return await c.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    return asyncio.run(read())


@pytest.fixture
def reports_service(on_label_studio):
    """The `reports` service of a stack whose home is the test's own (where its workspaces are)."""
    settings = Settings(home=on_label_studio, reports_port=procs.free_port())
    started = time.perf_counter()
    stack.up(settings, print, only=("reports",))
    print(f"reports service: up and healthy in {time.perf_counter() - started:.2f} s")
    yield settings
    stack.down(settings, print, only=("reports",))


def test_a_report_link_from_a_flow_artifact_opens_in_chromium_and_a_tampered_one_is_refused(
    prefect_api, label_studio, ls_client, reports_service, tmp_path, unique
):
    from playwright.sync_api import sync_playwright

    from flows.quality_check import QualityCheckParams, quality_check

    home = reports_service.home
    title = f"reports {unique}"
    spec = _spec(tmp_path, title)
    made = _workspace(home, title, n_planned=20, n_answered=15)
    project = ls_client.projects.create(title=title, description="Read the guidelines before you start.")
    write_json(made["ws"].project_file, {"project_id": project.id, "url": label_studio.url, "title": title})

    state = quality_check(
        QualityCheckParams(spec=str(spec), adjudicate=False, method="mv", n_boot=20), return_state=True
    )
    assert state.is_completed(), state
    arts = {a.key: a for a in _artifacts(state.state_details.flow_run_id)}
    key = workspace_key(title)
    link = re.search(r"\((http://[^)\s]+)\)", arts[f"quality-report-{key}"].data).group(1)
    base = load_state(home)["services"]["reports"]["url"]
    assert link.startswith(f"{base}/w/{made['ws'].root.name}/quality-") and "?sig=" in link
    assert link in arts[f"quality-{key}"].data and "**Reports**" in arts[f"quality-{key}"].data  # the summary
    tampered = link[:-1] + ("0" if link[-1] != "0" else "1")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            opened = page.goto(link)
            page.wait_for_load_state("load")
            heading = page.locator("h1").first.inner_text()
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
            page.screenshot(path=str(ARTIFACTS / "report-by-url.png"))
            refused = page.goto(tampered)
            refused_text = page.locator("body").inner_text()
        finally:
            browser.close()
    assert opened is not None and opened.status == 200
    assert opened.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'none'" in opened.headers["content-security-policy"]
    assert title in heading, heading
    assert images and all(done and width > 0 for _, done, width in images), images
    assert refused is not None and refused.status == 403 and title not in refused_text

    # Label Studio: the description keeps what was there and links the newest quality report, managers only
    description = ls_client.projects.get(id=project.id).description
    assert description.startswith("Read the guidelines before you start.")
    lines = [line for line in description.splitlines() if line.startswith(DESCRIPTION_PREFIX)]
    assert len(lines) == 1
    manager = lines[0].removeprefix(DESCRIPTION_PREFIX)
    assert manager == f"{base}/w/{made['ws'].root.name}/latest/quality"
    login = load_state(home)["reports"]
    assert httpx.get(manager, timeout=30).status_code == 401  # what an annotator clicking it gets
    newest = httpx.get(manager, auth=(login["user"], login["password"]), timeout=30)
    assert newest.status_code == 200 and newest.text == httpx.get(link, timeout=30).text


def test_the_reports_service_is_part_of_the_stack(tmp_path):
    """Unit: `up` starts it before the deployments (whose flows sign links), with the managers' login it made."""
    from smo_labelstudio.core.reportlinks import REPORTS_KEY
    from smo_labelstudio.stack.services import Reports, services

    settings = Settings(home=tmp_path, reports_port=4999)
    names = [s.name for s in services(settings)]
    assert names.index("reports") == len(names) - 2 and names[-1] == "deployments"
    svc, state = Reports(settings), {}
    svc.prepare(state, print)
    assert state["reports"]["user"] == "manager" and len(state["reports"]["password"]) >= 20
    assert (tmp_path / REPORTS_KEY).stat().st_mode & 0o777 == 0o600
    env = svc.environ(state)
    assert env["SMO_HOME"] == str(tmp_path) and env["SMO_REPORTS_PASSWORD"] == state["reports"]["password"]
    argv, _ = svc.argv()
    assert argv[1:3] == ["-m", "smo_labelstudio.reports.server"] and argv[-4:] == [
        "--host",
        "127.0.0.1",
        "--port",
        "4999",
    ]
    assert svc.health_url == "http://127.0.0.1:4999/health"
