"""Report links for the places people read: a flow run's summary artifact in Prefect, the scorecards, and the
Label Studio project's description (core/reportlinks.py signs them; reports/server.py serves them).

The project's description is read by every annotator (Label Studio Community has no roles), and the quality
report holds every annotator's gold accuracy and confusions against gold: so the description carries an unsigned
link to the newest quality report, which opens only after the managers' login; annotators see that it exists,
not what it holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from smo_labelstudio.core.reportlinks import manager_link, signed_link
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.reports.safe import md_link

DESCRIPTION_PREFIX = "Quality report (managers' login): "


def _newest(ws: Workspace, kind: str) -> Path | None:
    found = sorted(ws.reports.glob(f"{kind}-*/report.html"))
    return found[-1] if found else None


def report_files(ws: Workspace) -> dict[str, Path]:
    """The newest report of each kind a workspace holds: quality, operations, scorecards (the PM's index), datasheet."""
    files = {
        "Quality report": _newest(ws, "quality"),
        "Operations report": _newest(ws, "ops"),
        "Scorecards (index)": ws.reports / "scorecards" / "index.html",
        "Datasheet": ws.reports / "datasheet" / "datasheet.md",
    }
    return {name: path for name, path in files.items() if path is not None and path.is_file()}


def report_links(ws: Workspace, home: Path | None = None) -> dict[str, str]:
    """Each of `report_files` as a signed link (by name)."""
    links = {name: signed_link(path, home) for name, path in report_files(ws).items()}
    return {name: link for name, link in links.items() if link}


def links_markdown(ws: Workspace, home: Path | None = None) -> str:
    """A Markdown paragraph with the workspace's report links, for a flow run's summary artifact ('' if none)."""
    links = report_links(ws, home)
    if not links:
        return ""
    return "\n\n**Reports**: " + " · ".join(md_link(name, url) for name, url in links.items()) + "\n"


def scorecard_links(pages: dict[str, Path], home: Path | None = None) -> dict[str, str]:
    """Each annotator's scorecard page as a signed link: it opens that one page and nothing else."""
    links = {name: signed_link(path, home) for name, path in pages.items()}
    return {name: link for name, link in links.items() if link}


def keep_datasheet(ws: Workspace, out: Path) -> Path | None:
    """Copy an export's datasheet (md and json) into the workspace's `reports/datasheet/`, where it is served."""
    source = Path(out) / "datasheet.md"
    if not source.is_file():
        return None
    folder = ws.reports / "datasheet"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("datasheet.md", "datasheet.json"):
        if (Path(out) / name).is_file():
            shutil.copyfile(Path(out) / name, folder / f".{name}.tmp")
            (folder / f".{name}.tmp").replace(folder / name)
    return folder / "datasheet.md"


def described(description: str, link: str) -> str:
    """The project's description with its one quality-report line replaced (or added at the end)."""
    lines = [line for line in (description or "").splitlines() if not line.startswith(DESCRIPTION_PREFIX)]
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join([*lines, *([""] if lines else []), DESCRIPTION_PREFIX + link])


def link_in_description(ws: Workspace, url: str, token: str, project_id: int, home: Path | None = None) -> str:
    """Point the Label Studio project's description at the newest quality report (managers only); returns the link."""
    from smo_labelstudio.labelstudio.client import http_client, project_detail, update_project  # noqa: PLC0415

    link = manager_link(ws.root, "quality", home)
    with http_client(url, token, timeout=120) as http:
        resp = project_detail(http, project_id)
        resp.raise_for_status()
        current = str(resp.json().get("description") or "")
    wanted = described(current, link)
    if wanted != current:
        update_project(url, token, project_id, description=wanted)
    return link
