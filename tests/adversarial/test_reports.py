"""Hostile content cannot reach a report, datasheet or Prefect artifact as markup or an active link.

Labels, languages and item text are free text in Label Studio: any account can post any annotation JSON,
edit a task's data or import tasks into a project. A hostile account does all three against a real Label
Studio; the pull quarantines the labels that are not in the taxonomy (with a count and a table), and the
quality report, the operations report, the datasheet and the flows' Prefect artifacts (read back from a
real Prefect API) carry no tag or attribute outside an allow-list, no `javascript:`/`data:` link, and a
strict Content-Security-Policy on every HTML page. Unit cases feed hostile strings straight into the
renderers, past the quarantine, to show the escaping holds on its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import markdown
import pandas as pd
import pytest
import yaml

from smo_labelstudio.reports import safe
from smo_labelstudio.reports.shell import render_html, render_markdown_template

HOSTILE = [
    "[x](javascript:alert(1))",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "\\[y\\](javascript:alert(2))",
    "![i](javascript:alert(3))",
    "<javascript:alert(4)>",
    "[z]: javascript:alert(5)\n\n[z]",
    "`code` *em* | pipe\n# heading",
    "<a href='data:text/html,<script>alert(6)</script>'>d</a>",
]
LINK_ATTRS = {"href", "src"}
ALIGN = re.compile(r"text-align: (left|right|center);")
ALLOWED = {
    **{t: set() for t in safe.TAGS},
    **{t: set(a) for t, a in safe.ATTRIBUTES.items()},
    "a": {"href", "title", "rel"},
}
PAGE_TAGS = {"html": {"lang"}, "head": set(), "body": set(), "title": set(), "style": set(), "meta": {"charset"}}


class _Audit(HTMLParser):
    """Every tag and attribute of a page against an allow-list; link targets to http(s), mailto, relative
    addresses or (images only) inline PNGs."""

    def __init__(self, allowed: dict[str, set[str]], images: tuple[str, ...] = (), files: tuple[str, ...] = ()):
        super().__init__(convert_charrefs=True)
        self.allowed, self.images, self.files, self.problems, self.csp = allowed, images, files, [], []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta" and dict(attrs).get("http-equiv", "").lower() == "content-security-policy":
            self.csp.append(dict(attrs).get("content") or "")
            return
        if tag == "meta" and set(dict(attrs)) <= {"name", "content"} and dict(attrs).get("name") == "referrer":
            return
        if tag not in self.allowed:
            self.problems.append(f"tag <{tag}>")
            return
        for name, value in attrs:
            if tag in ("th", "td") and name == "style" and ALIGN.fullmatch(value or ""):
                continue  # a Markdown table's column alignment (`---:`), ours
            if name not in self.allowed[tag]:
                self.problems.append(f"<{tag} {name}={value!r}>")
            elif name in LINK_ATTRS:
                target = (value or "").strip().lower()
                ok_image = tag == "img" and any(target.startswith(p) for p in self.images)
                ok_file = tag == "a" and any((value or "").startswith(p) for p in self.files)
                if (
                    not ok_image
                    and not ok_file
                    and (safe.safe_url(value) is None or target.startswith(("javascript", "data", "//")))
                ):
                    self.problems.append(f"<{tag} {name}={value!r}>")


def audit_html(
    page: str, *, whole_page: bool = False, images: tuple[str, ...] = (), files: tuple[str, ...] = ()
) -> list[str]:
    """Problems found in an HTML page or fragment (empty when safe); `files`: our own report files a link may
    name (the flows' link artifacts point at the HTML report as a file:// URI)."""
    parser = _Audit({**ALLOWED, **(PAGE_TAGS if whole_page else {})}, images, files)
    parser.feed(page)
    parser.close()
    problems = list(parser.problems)
    if whole_page:
        if len(parser.csp) != 1:
            problems.append(f"{len(parser.csp)} CSP meta tags")
        elif "script-src 'none'" not in parser.csp[0] or "default-src 'none'" not in parser.csp[0]:
            problems.append(f"weak CSP {parser.csp[0]!r}")
        elif "'unsafe-inline'" in parser.csp[0]:
            problems.append("CSP allows inline code")
    return problems


def audit_markdown(text: str, files: tuple[str, ...] = ()) -> list[str]:
    """Problems in Markdown as a renderer without a sanitizer (the Prefect UI's stand-in) would show it."""
    return audit_html(markdown.markdown(text, extensions=["tables"]), files=files)


# --- the escaping on its own: hostile strings straight into the renderers ------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_md_text_renders_as_the_same_characters_and_nothing_else(value):
    rendered = markdown.markdown(f"| a |\n|---|\n| {safe.md_text(value)} |", extensions=["tables"])
    assert not audit_html(rendered)
    text = rendered.split("<td>")[1].split("</td>")[0]
    assert "<" not in text  # every angle bracket of the value is an entity: text, not a tag
    assert " ".join(value.split()) in " ".join(__import__("html").unescape(text).split())  # the text survives


def test_links_only_to_http_mailto_or_relative_addresses():
    for bad in ("javascript:alert(1)", " JaVaScRiPt:x", "java\tscript:x", "data:text/html,x", "vbscript:x", "//evil"):
        assert safe.safe_url(bad) is None and safe.md_link("go", bad) == "go"
    assert safe.md_link("LS", "http://ls:8080/projects/3/data") == "[LS](http://ls:8080/projects/3/data)"
    assert safe.safe_url("https://x/a b(1)") == "https://x/a%20b%281%29"  # cannot close the Markdown link early


def test_report_html_is_cleaned_to_the_allow_list_and_has_a_strict_csp():
    raw = "\n\n".join(["# t", *HOSTILE, "[ok](https://example.org)", "![plot](gold-accuracy.png)"])
    page = render_html("quality.html", raw, {"gold-accuracy.png": b"\x89PNG"}, title='<b>"title"</b>')
    assert not audit_html(page, whole_page=True, images=("data:image/png;base64,",))
    assert "<script" not in page and 'href="javascript' not in page.lower()  # the text stays, as text
    assert 'href="https://example.org"' in page and 'src="data:image/png;base64,' in page
    assert "&lt;b&gt;&#34;title&#34;&lt;/b&gt;" in page or "&lt;b&gt;&quot;title&quot;&lt;/b&gt;" in page


def test_report_templates_escape_every_data_value():
    from smo_labelstudio.reports.shell import MARKDOWN

    frame = pd.DataFrame({"annotator": HOSTILE, "policy": HOSTILE[::-1]})
    text = MARKDOWN.from_string(
        "# {{ title }}\n\n{{ 'project'|link(url) }}\n\n### {{ who }}\n\n"
        "{{ frame|table({'annotator': 'annotator', 'policy': 'policy'}) }}\n"
    ).render(title=HOSTILE[0], url="javascript:alert(1)", who=HOSTILE[3], frame=frame)
    assert not audit_markdown(text)
    assert render_markdown_template  # the module's entry point is the same environment


def test_datasheet_escapes_titles_languages_labels_and_pseudonyms():
    from smo_labelstudio.export.dataset import render_datasheet

    h = HOSTILE[0]
    sheet = {
        "title": HOSTILE[1],
        "n_annotators": 2,
        "pull_watermark": HOSTILE[2],
        "method": "smoothed-ds",
        "gates": {"min_confidence": 0.7},
        "seed": 0,
        "versions": {"taxonomy": HOSTILE[3], "config": [h, "x"]},
        "counts": {"by_split": {h: 1}, "tasks": 1},
        "label_distribution": [{"split": "train", "language": HOSTILE[3], "policy": h, "n": 1}],
        "agreement": {
            "tasks_with_2plus_annotators": 1,
            "mean_pair_agreement": 1.0,
            "ci_low": 0.5,
            "ci_high": 1.0,
            "per_policy": [{"policy": HOSTILE[4]}],
        },
        "gold": {
            "n_gold_tasks": 1,
            "n_gold_answers": 1,
            "answer_accuracy": 1.0,
            "ci_low": 0.2,
            "ci_high": 1.0,
            "annotators": [
                {"annotator": HOSTILE[5], "gold_n": 1, "gold_accuracy": 1.0, "ci_low": 0, "ci_high": 1, "flagged": h}
            ],
        },
        "files": {HOSTILE[6]: {"sha256": "ab", "bytes": 1}},
    }
    text = render_datasheet(sheet)
    assert not audit_markdown(text)
    assert "<script" not in text and "<img" not in text and "<svg" not in text


def test_table_artifact_cells_are_text_on_one_line():
    rows = safe.plain_rows([{"annotator": HOSTILE[1], "n": 3, "ok": True, "none": None, "<k>": HOSTILE[7]}])
    assert rows == [
        {
            "annotator": "&lt;script&gt;alert(1)&lt;/script&gt;",
            "n": 3,
            "ok": True,
            "none": None,
            "&lt;k&gt;": "[z]: javascript:alert(5) [z]",
        }
    ]


# --- against the real components ------------------------------------------------------------------

ROWS = [
    ("r1", "Have a great day everyone", "en"),
    ("r2", "<script>alert('item')</script> [win](javascript:alert(1)) <img src=x onerror=alert(2)>", "en"),
    ("r3", "gracias por compartir esta receta", "es"),
]
GOLD = [("g1", "what a lovely morning", "en", "no_violation", "")]


def _project(tmp_path: Path, title: str) -> tuple[Path, Path, Path]:
    data = tmp_path / "items.csv"
    pd.DataFrame(ROWS, columns=["id", "text", "language"]).to_csv(data, index=False)
    gold = tmp_path / "gold.csv"
    pd.DataFrame(GOLD, columns=["id", "text", "language", "policy", "severity"]).to_csv(gold, index=False)
    spec = yaml.safe_load(Path("specs/example.yaml").read_text())
    spec.update(title=title, gold_rate=0.5)
    spec["quality"].update(min_gold_answers=1)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, data, gold


def _choice(control: str, values: list[str]) -> dict:
    return {"from_name": control, "to_name": "text", "type": "choices", "value": {"choices": values}}


async def _artifacts(flow_run_id) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def _audit_artifacts(state, home: Path) -> dict[str, object]:
    """Every artifact of a flow run, read back from the Prefect API, audited; their data by key (links may
    name our own report files under `home`)."""
    files = (home.resolve().as_uri() + "/",)
    found = {}
    for artifact in asyncio.run(_artifacts(state.state_details.flow_run_id)):
        data = (
            artifact.data
            if not isinstance(artifact.data, str) or artifact.type != "table"
            else json.loads(artifact.data)
        )
        text = json.dumps(data) if artifact.type == "table" else str(data)
        if artifact.type == "table":
            rows = data if isinstance(data, list) else []
            for row in rows:
                for k, v in row.items():
                    assert "<" not in str(k) + str(v) and "\n" not in str(v), (artifact.key, k, v)
        else:
            assert not audit_markdown(text, files), (artifact.key, audit_markdown(text, files))
        assert not audit_markdown(artifact.description or ""), artifact.key
        found[artifact.key or artifact.type] = data
    return found


def test_hostile_annotator_labels_languages_and_items_reach_nothing_active(
    label_studio, prefect_api, tmp_path, on_label_studio, unique
):
    from flows.create_tasks import create_tasks
    from flows.export_dataset import export_dataset
    from flows.pull_completions import pull_completions
    from flows.quality_check import quality_check
    from smo_labelstudio.core.params import ExportDatasetParams, LaunchParams, PullParams, QualityCheckParams
    from smo_labelstudio.core.spec import load_spec
    from smo_labelstudio.core.workspace import Workspace, read_table
    from smo_labelstudio.labelstudio.users import ensure_annotator
    from smo_labelstudio.pull.completions import NOT_IN_TAXONOMY, UNKNOWN_CONTROL, quarantine_table
    from smo_labelstudio.reports.operations import run_report

    started = time.perf_counter()
    home = on_label_studio
    spec_path, data, gold = _project(tmp_path, f"Hostile reports {unique}")
    spec = load_spec(spec_path)
    launched = create_tasks(LaunchParams(spec=str(spec_path), data=str(data), gold=str(gold)), return_state=True)
    assert launched.is_completed(), launched
    manifest = launched.result()
    pid = manifest["project_id"]
    assert manifest["imported"] == 3 and manifest["gold"] == 1
    _audit_artifacts(launched, home)

    hostile = ensure_annotator(label_studio.url, label_studio.token, f"hostile-{unique}@example.com", home=home)
    http = httpx.Client(base_url=label_studio.url, headers=hostile.headers, timeout=60)
    tasks = http.get("/api/tasks", params={"project": pid, "page_size": 100}).json()["tasks"]
    assert len(tasks) == 4
    # the hostile account edits every task's language, imports a task of its own, and answers everything
    for task in tasks:
        edited = http.patch(f"/api/tasks/{task['id']}", json={"data": {**task["data"], "language": HOSTILE[3]}})
        assert edited.status_code == 200, edited.text
    imported = http.post(f"/api/projects/{pid}/import", json=[{"text": HOSTILE[1], "language": HOSTILE[2]}])
    assert imported.status_code == 201, imported.text
    tasks = http.get("/api/tasks", params={"project": pid, "page_size": 100}).json()["tasks"]
    assert len(tasks) == 5
    result = [
        _choice("policy", ["hate", HOSTILE[0], HOSTILE[1]]),
        _choice("severity", [HOSTILE[2]]),
        _choice("evil", ["hate"]),
    ]
    for task in tasks:
        posted = http.post(f"/api/tasks/{task['id']}/annotations", json={"result": result, "lead_time": 3.0})
        assert posted.status_code == 201, posted.text
    http.close()
    expected_quarantined = 4 * len(tasks)  # two policies, one severity, one unknown control per annotation

    pulled = pull_completions(PullParams(spec=str(spec_path)), return_state=True)
    assert pulled.is_completed(), pulled
    summary = pulled.result()
    ws = Workspace(Path(summary["tables"]["labels"]).parent.parent)
    assert ws.root.is_relative_to(home)
    assert summary["labels_quarantined"] == expected_quarantined
    refused = read_table(quarantine_table(ws))
    assert summary["tables"]["labels_quarantine"] == str(quarantine_table(ws)) and len(refused) == expected_quarantined
    assert refused.groupby("reason").size().to_dict() == {
        NOT_IN_TAXONOMY: 3 * len(tasks),
        UNKNOWN_CONTROL: len(tasks),
    }
    labels = read_table(ws.labels)
    assert set(labels["label"]) == {"hate"} and set(labels["control"]) == {"policy"}
    ours = labels[labels["external_id"].notna()]
    assert set(ours["language"]) <= {"en", "es"}  # the language we imported, not the edited one
    artifacts = _audit_artifacts(pulled, home)
    assert f"| {expected_quarantined:,} |" in str(artifacts[f"pull-{pid}"])

    checked = quality_check(QualityCheckParams(spec=str(spec_path), adjudicate=False, n_boot=20), return_state=True)
    assert checked.is_completed(), checked
    quality = checked.result()
    page = Path(quality["report"]["html"]).read_text(encoding="utf-8")
    report_md = Path(quality["report"]["markdown"]).read_text(encoding="utf-8")
    artifacts = _audit_artifacts(checked, home)
    ops, ops_files = run_report(spec, n_boot=10)
    ops_page = ops_files.html.read_text(encoding="utf-8")

    exported = export_dataset(ExportDatasetParams(spec=str(spec_path), out=str(tmp_path / "out")), return_state=True)
    assert exported.is_completed(), exported
    datasheet = (tmp_path / "out" / "datasheet.md").read_text(encoding="utf-8")
    artifacts |= _audit_artifacts(exported, home)
    # the export's per-annotator answers (issue 18): the hostile account under a pseudonym, only its quarantined-
    # clean labels counted, every file intact
    rows = [json.loads(line) for line in (tmp_path / "out" / "dataset.jsonl").read_text().splitlines()]
    entries = [e for r in rows for e in r["answers"]]
    assert (
        len(rows) == 4 and len(entries) == 4 and all(re.fullmatch(r"ann-[0-9a-f]{12}", e["annotator"]) for e in entries)
    )
    assert all(e["policies"] == ["hate"] and e["severity"] is None for e in entries) and all(
        r["soft_hate"] == 1 for r in rows
    )
    assert pd.read_parquet(tmp_path / "out" / "dataset.parquet")["answers"].map(len).tolist() == [1, 1, 1, 1]
    exported_files = "".join(f.read_text(errors="replace") for f in (tmp_path / "out").iterdir())
    assert f"hostile-{unique}" not in exported_files and "example.com" not in exported_files

    for name, html_page in (("quality", page), ("ops", ops_page)):
        assert not audit_html(html_page, whole_page=True, images=("data:image/png;base64,",)), name
    for name, text in (("quality.md", report_md), ("ops.md", ops_files.markdown.read_text()), ("datasheet", datasheet)):
        assert not audit_markdown(text), name
    everything = "\n".join([page, report_md, ops_page, datasheet, json.dumps(artifacts, default=str)])
    for value in HOSTILE[:4]:
        assert value not in everything, value  # quarantined, or never taken from the task's data
    assert "javascript:" not in everything.lower()
    print(f"hostile annotator end to end: {time.perf_counter() - started:.1f} s")
