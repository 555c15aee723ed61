"""The SQL warehouse: tables from a workspace, the same answers on the embedded DuckDB store and on this
machine's PostgreSQL, re-publishing without duplicates, the data dictionary in step with what is
published, `smo sql` / `smo warehouse sync`, and end to end on a simulated Label Studio project with
the README's analyst queries."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC
from pathlib import Path

import httpx
import pandas as pd
import pytest
from smo_cli import smo, stack_env
from warehouse_data import owned_database, synthetic_workspace

from smo_labelstudio.core.jsonenc import jsonable
from smo_labelstudio.core.spec import load_spec
from smo_labelstudio.core.workspace import Workspace
from smo_labelstudio.quality.check import compute_check, load_inputs
from smo_labelstudio.quality.tables import save_quality_tables
from smo_labelstudio.warehouse import publish as wh
from smo_labelstudio.warehouse import tables as wt

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("SMO_TEST_ARTIFACTS") or REPO / "test-artifacts") / "warehouse"


def readme_queries() -> list[tuple[str, str]]:
    """(title, SQL) of every query in the analyst guide's "Analyst queries" section (once the README's)."""
    text = (REPO / "docs" / "guides" / "analyst.md").read_text()
    section = text.split("\n## Analyst queries\n", 1)[1].split("\n## ", 1)[0]
    return [(t.strip(), q.strip()) for t, q in re.findall(r"\*\*(.+?)\*\*\s*```sql\n(.*?)```", section, re.S)]


def norm(rows: list) -> list[tuple]:
    """Query rows as comparable values: decimals and floats rounded to 6 places, times in UTC ISO text."""

    def one(v):
        v = jsonable(v)
        return round(float(v), 6) if isinstance(v, float) else v

    return [tuple(one(v) for v in row) for row in rows]


@pytest.fixture
def pg_url(unique):
    """A database owned by a role that is not a superuser (`smo sql` refuses to query as one): publishing and
    querying both go through it, as a team's warehouse role would."""
    with owned_database(f"smo_wh_{unique}") as url:
        yield url


@pytest.fixture
def synthetic(tmp_path):
    ws = synthetic_workspace(tmp_path)
    spec = load_spec(REPO / "specs" / "example.yaml")
    inputs = load_inputs(ws)
    result = compute_check(inputs["labels"], inputs["gold"], spec.quality, cancelled=inputs["cancelled"], n_boot=20)
    save_quality_tables(ws, result)
    return ws, spec


# --- tables -------------------------------------------------------------------------------------


def test_tables_follow_the_schema_are_deterministic_and_carry_the_detected_language(synthetic):
    ws, spec = synthetic
    tables = wt.build_tables(ws, spec)
    assert set(tables) == set(wt.SCHEMA)
    for name, frame in tables.items():
        assert list(frame.columns) == [c for c, _ in wt.SCHEMA[name]], name
        assert (frame["project"] == "synthetic-project").all(), name
    again = wt.build_tables(ws, spec)
    for name in tables:
        pd.testing.assert_frame_equal(tables[name], again[name], obj=name)
    tasks = tables["tasks"].set_index("external_id")
    assert bool(tasks.loc["t2", "language_detected"]) and tasks.loc["t2", "language_confidence"] == 0.93
    assert not tasks.loc["t1", "language_detected"] and pd.isna(tasks.loc["t1", "language_confidence"])
    ann = tables["annotations"]
    assert ann.loc[ann["external_id"] == "t2", "language_detected"].all()
    assert len(ann) == 9 and ann["annotation_id"].is_unique
    gold = tables["gold_results"].set_index("annotator")
    assert gold["correct"].to_dict() == {"a@x": True, "b@x": False, "c@x": True}
    daily = tables["annotator_daily"]
    assert daily["answers"].sum() + daily["skipped"].sum() == 9 and daily["skipped"].sum() == 1
    t1 = tables["agreement_task"].set_index("external_id").loc["t1"]
    assert (t1["n_pairs"], t1["agreeing_pairs"]) == (3, 1)
    assert len(tables["consensus"]) and len(tables["agreement_label"]) and len(tables["agreement_language"])
    text = "\n".join(frame.astype(str).to_csv() for frame in tables.values())
    assert "127.0.0.1" not in text and "http" not in text  # no server URL (the manifest has one) is published


def test_a_project_pulled_before_anyone_answered_publishes_its_tasks(tmp_path):
    """The first pull of a fresh batch holds no annotations: every table still builds (the tasks all
    `not_started`), which is what the pull flow's publish step does right after launch."""
    ws = synthetic_workspace(tmp_path)
    annotations = pd.read_parquet(ws.annotations).iloc[:0]
    annotations.to_parquet(ws.annotations)
    pd.read_parquet(ws.labels).iloc[:0].to_parquet(ws.labels)
    tables = wt.build_tables(ws, load_spec(REPO / "specs" / "example.yaml"))
    tasks = tables["tasks"]
    assert len(tasks) == 4 and tasks["answers"].eq(0).all() and tasks["first_answer_at"].isna().all()
    assert tables["annotations"].empty


def test_flow_runs_keep_only_numbers(tmp_path):
    ws = synthetic_workspace(tmp_path)
    wt.record_flow_run(
        ws,
        "pull-completions",
        "run-1",
        "2026-11-21T10:00:00Z",
        "2026-11-21T10:00:05Z",
        "COMPLETED",
        {"annotations": 9, "mode": "full", "tables": {"a": "/x"}, "url": "http://h", "seconds": 1.5},
    )
    wt.record_flow_run(ws, "pull-completions", "run-1", "2026-11-21T10:00:00Z", "2026-11-21T10:00:06Z", "COMPLETED")
    runs = pd.read_parquet(wt.flow_runs_log(ws))
    assert len(runs) == 1 and runs["seconds"].iloc[0] == 6.0  # recorded again: replaced, not added
    wt.record_flow_run(
        ws,
        "quality-check",
        "run-2",
        "2026-11-21T11:00:00Z",
        "2026-11-21T11:00:01Z",
        "FAILED",
        {"annotations": 9, "mode": "full", "url": "http://h", "seconds": 1.5},
    )
    assert json.loads(pd.read_parquet(wt.flow_runs_log(ws))["counts"].iloc[1]) == {"annotations": 9, "seconds": 1.5}


# --- both engines -------------------------------------------------------------------------------


def test_duckdb_and_postgres_give_identical_answers_and_publishing_twice_duplicates_nothing(synthetic, pg_url):
    ws, spec = synthetic
    duck, pg = wh.target(ws), wh.target(ws, pg_url)
    for _ in range(2):
        wh.publish(ws, spec, duck)
        wh.publish(ws, spec, pg)
    names = list(wt.SCHEMA) + list(wh.VIEWS)
    for name in names:
        n = len(wh.query(duck, f"select * from {name} limit 0")[0])
        sql = f"select * from {name} order by " + ", ".join(str(i + 1) for i in range(n))
        duck_rows, pg_rows = norm(wh.query(duck, sql)[1]), norm(wh.query(pg, sql)[1])
        assert duck_rows == pg_rows, name
    assert norm(wh.query(pg, "select count(*) from annotations")[1]) == [(9,)]
    for title, sql in readme_queries():
        assert norm(wh.query(duck, sql)[1]) == norm(wh.query(pg, sql)[1]), title
    # a second project shares the PostgreSQL schema; publishing one leaves the other's rows alone
    other = synthetic_workspace(ws.root.parent.parent / "second")
    wh.publish(other, spec, pg)
    counts = dict(wh.query(pg, "select project, count(*) from annotations group by project order by project")[1])
    assert counts == {"synthetic-project": 9}  # same workspace name: the same project's rows replaced
    renamed = type(other)(other.root.parent / "another-project")
    other.root.rename(renamed.root)
    wh.publish(renamed, spec, pg)
    counts = dict(wh.query(pg, "select project, count(*) from annotations group by project order by project")[1])
    assert counts == {"another-project": 9, "synthetic-project": 9}


def test_the_data_dictionary_documents_exactly_the_published_columns(synthetic):
    ws, spec = synthetic
    wh.publish(ws, spec)
    documented: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in (REPO / "docs" / "data_dictionary.md").read_text().splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            documented[current] = []
        elif current and line.startswith("| ") and not line.startswith("| column") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            documented[current].append((cells[0], cells[1]))
    assert set(documented) == set(wt.SCHEMA) | set(wh.VIEWS)
    for table, columns in wt.SCHEMA.items():
        assert documented[table] == columns, table
    for view in wh.VIEWS:
        published = wh.query(wh.target(ws), f"select * from {view} limit 0")[0]
        assert [c for c, _ in documented[view]] == published, view


# --- the commands -------------------------------------------------------------------------------


def test_smo_sql_answers_in_three_formats_and_mistakes_are_one_line(synthetic, tmp_path):
    from typer.testing import CliRunner

    from smo_labelstudio.cli import app

    ws, spec = synthetic
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        (REPO / "specs" / "example.yaml")
        .read_text()
        .replace("title: Text moderation - example batch", "title: Synthetic project")
    )
    env = {**os.environ, "SMO_HOME": str(tmp_path)}
    missing = smo(env, "sql", "--spec", str(spec_file), "select 1")  # as a user runs it: one line, no traceback
    assert missing.returncode == 1 and missing.stderr.startswith("error: no warehouse at"), missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    sync = smo(env, "warehouse", "sync", "--spec", str(spec_file), "--json")
    assert sync.returncode == 0, sync.stderr
    assert json.loads(sync.stdout)["tables"]["annotations"] == 9
    out = smo(env, "sql", "--spec", str(spec_file), "select count(*) as n from annotations", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"n": 9}]

    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["sql", "--spec", str(spec_file), *args], env={"SMO_HOME": str(tmp_path)})

    csv_out = run("select language, count(*) as n from tasks group by language order by language", "--format", "csv")
    assert csv_out.stdout.splitlines() == ["language,n", "en,2", "es,1", "fr,1"]
    table = run("select external_id, language_detected, language_confidence from tasks order by 1")
    assert table.exit_code == 0 and "(4 rows)" in table.stdout and "0.93" in table.stdout
    rows = json.loads(
        run("select day, created_at from annotations order by annotation_id limit 1", "--format", "json").stdout
    )
    assert rows == [{"day": "2026-11-20", "created_at": "2026-11-20T10:00:00+00:00"}]
    for args, code, text in (
        (("select nonsense from nowhere",), 1, "error: "),
        (("select 1", "--format", "xml"), 2, "error: --format 'xml'"),
        (("select 1", "--url", "mysql://x/y"), 1, "error: expected postgresql://"),
        (("select 1", "--url", "postgresql://u:s3cret@127.0.0.1:1/db"), 1, "error: cannot connect"),
    ):
        result = run(*args)
        assert result.exit_code == code and result.stderr.startswith(text), (args, result.stderr)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert len(result.stderr.strip().splitlines()) == 1 and "s3cret" not in result.stderr, args


# --- end to end ---------------------------------------------------------------------------------

ITEMS = {
    "en": [
        "have a great day everyone",
        "claim your free prize now",
        "you are worthless and stupid",
        "see you at training tonight",
        "the match was exciting",
        "send your password to unlock the account",
        "thanks for the lovely recipe",
        "buy cheap followers here today",
    ],
    "es": [
        "gracias por compartir esta foto",
        "gana un premio gratis ahora",
        "eres un inútil total",
        "nos vemos mañana en el parque",
        "el partido fue genial",
        "tu cuenta está bloqueada, envía la clave",
        "qué buena receta de tortilla",
        "compra seguidores baratos aquí",
    ],
    "fr": [
        "bonne journée à tous les amis",
        "gagnez un prix gratuit maintenant",
        "tu ne vaux rien du tout",
        "à demain à l'entraînement",
        "le match était super",
        "votre compte est bloqué, envoyez le code",
        "merci pour la recette de crêpes",
        "achetez des abonnés pas chers",
    ],
}
NO_LANGUAGE = [
    ("nl1", "¿Dónde está la estación de tren más cercana, por favor?", "es"),
    ("nl2", "Je voudrais réserver une table pour deux personnes ce soir", "fr"),
]
GOLD = [
    ("g1", "that ethnic group should be thrown out of the country", "en", "hate", "3"),
    ("g2", "what a lovely morning", "en", "no_violation", ""),
    ("g3", "click to win a free phone now", "en", "spam_scams", "1"),
    ("g4", "merci beaucoup pour votre aide", "fr", "no_violation", ""),
]


def _files(tmp_path: Path, title: str) -> tuple[Path, Path, Path]:
    rows = [(f"{lang}{i}", text, lang) for lang, texts in ITEMS.items() for i, text in enumerate(texts)]
    rows += [(i, text, "") for i, text, _ in NO_LANGUAGE]
    data = tmp_path / "items.csv"
    data.write_text(
        "id,text,language\n" + "\n".join(f'{i},"{t}",{lang}' for i, t, lang in rows) + "\n", encoding="utf-8"
    )
    gold = tmp_path / "gold.csv"
    gold.write_text(
        "id,text,language,policy,severity\n"
        + "\n".join(f'{i},"{t}",{lang},{p},{s}' for i, t, lang, p, s in GOLD)
        + "\n",
        encoding="utf-8",
    )
    spec = tmp_path / "spec.yaml"
    text = (REPO / "specs" / "example.yaml").read_text()
    for old, new in (
        ("title: Text moderation - example batch", f"title: {title}"),
        ("gold_rate: 0.05", "gold_rate: 0.15"),
        ("share: 0.2", "share: 1.0"),
    ):
        assert old in text, f"specs/example.yaml changed: no {old!r}"
        text = text.replace(old, new)
    spec.write_text(text)
    return spec, data, gold


def _label_studio_annotations(label_studio, project_id: int) -> int:
    """Every annotation Label Studio holds for the project (skipped ones included), through its export API."""
    resp = httpx.get(
        f"{label_studio.url}/api/projects/{project_id}/export",
        params={"exportType": "JSON"},
        headers=label_studio.headers,
        timeout=120,
    )
    resp.raise_for_status()
    return sum(len(task.get("annotations") or []) for task in resp.json())


def test_a_simulated_project_published_to_duckdb_and_postgres_answers_the_readme_queries_identically(
    label_studio, ml_backend, prefect_api, tmp_path, unique, monkeypatch, pg_url
):
    """launch -> 3 simulated annotators -> pull -> quality check -> export, each flow publishing to the
    embedded store and (SMO_WAREHOUSE_URL) PostgreSQL; then the README's queries on both."""
    title = f"warehouse {unique}"
    spec, data, gold = _files(tmp_path, title)
    home = tmp_path / "home"
    env = {**stack_env(label_studio, ml_backend, home), "SMO_WAREHOUSE_URL": pg_url}
    launched = smo(env, "launch", "--spec", str(spec), "--data", str(data), "--gold", str(gold), "--json")
    assert launched.returncode == 0, launched.stderr
    manifest = json.loads(launched.stdout)
    assert manifest["imported"] == 26 and manifest["gold"] == 4 and manifest["quarantined"] == 0
    sim = smo(env, "simulate", "--spec", str(spec), "--annotators", "3", "--accuracy", "0.8", "--json")
    assert sim.returncode == 0, sim.stderr
    pulled = smo(env, "pull", "--spec", str(spec), "--json")
    assert pulled.returncode == 0, pulled.stderr

    from flows.export_dataset import ExportDatasetParams, export_dataset
    from flows.quality_check import QualityCheckParams, quality_check

    for key in ("SMO_HOME", "SMO_LS_URL", "SMO_LS_TOKEN", "SMO_WAREHOUSE_URL"):
        monkeypatch.setenv(key, env[key])
    quality_check(QualityCheckParams(spec=str(spec), adjudicate=False, n_boot=50))
    exported = export_dataset(ExportDatasetParams(spec=str(spec), out=str(tmp_path / "dataset")))

    # `smo sql ... --format json` counts what Label Studio holds, on both stores
    held = _label_studio_annotations(label_studio, manifest["project_id"])
    assert held == 30 * 3
    out = smo(env, "sql", "--spec", str(spec), "select count(*) as n from annotations", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"n": held}]
    ws = Workspace.for_title(title, home)
    duck, pg = wh.target(ws), wh.target(ws, pg_url)
    assert wh.query(pg, "select count(*) as n from annotations")[1] == [(held,)]
    runs = wh.query(duck, "select flow, state from flow_runs order by started_at")[1]
    assert runs == [
        ("create-tasks", "COMPLETED"),
        ("pull-completions", "COMPLETED"),
        ("quality-check", "COMPLETED"),
        ("export-dataset", "COMPLETED"),
    ]
    exports = wh.query(pg, "select tasks, train + validation + test + gold + excluded from exports")[1]
    assert exports == [(exported["tasks"], exported["tasks"])]
    assert wh.query(pg, "select count(*) from consensus where control = 'policy'")[1] == [(30,)]
    detected = dict(wh.query(duck, "select external_id, language from tasks where language_detected")[1])
    assert detected == {i: lang for i, _, lang in NO_LANGUAGE}
    given = wh.query(duck, "select count(*) from tasks where not language_detected and language_confidence is null")
    assert given[1] == [(28,)]

    # the README's queries: the same answers on both stores; their output kept for the README
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    from smo_labelstudio.cli.warehouse import render

    report = []
    for title_, sql in readme_queries():
        duck_cols, duck_rows = wh.query(duck, sql)
        pg_cols, pg_rows = wh.query(pg, sql)
        assert duck_cols == pg_cols and norm(duck_rows) == norm(pg_rows), title_
        assert duck_rows, f"no rows for: {title_}"
        report.append(f"{title_}\n\n{render(duck_cols, duck_rows, 'table')}\n")
    (ARTIFACTS / "readme_queries.txt").write_text("\n".join(report), encoding="utf-8")

    # publishing again (every flow above already published to PostgreSQL) duplicates nothing
    counts = {t: wh.query(duck, f"select count(*) from {t}")[1][0][0] for t in wt.SCHEMA}
    sync = smo(env, "warehouse", "sync", "--spec", str(spec), "--url", pg_url, "--json")
    assert sync.returncode == 0, sync.stderr
    assert {t: wh.query(pg, f"select count(*) from {t}")[1][0][0] for t in wt.SCHEMA} == counts
    assert wh.query(pg, "select count(distinct annotation_id) from annotations")[1] == [(held,)]

    # nothing secret reaches the warehouse
    for table in wt.SCHEMA:
        cols, rows = wh.query(duck, f"select * from {table}")
        blob = json.dumps(norm(rows), default=str)
        for secret in (label_studio.token, label_studio.url, ml_backend.auth[1], "127.0.0.1"):
            assert secret not in blob, (table, secret)


def test_smo_quality_publishes_its_tables_like_the_flow(tmp_path):
    """`smo quality --spec` is not a flow run, but its consensus and agreement reach SQL at once."""
    assert synthetic_workspace(tmp_path).root == Workspace.for_title("Synthetic project", tmp_path).root
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        (REPO / "specs" / "example.yaml")
        .read_text()
        .replace("title: Text moderation - example batch", "title: Synthetic project")
    )
    env = {**os.environ, "SMO_HOME": str(tmp_path)}
    checked = smo(env, "quality", "--spec", str(spec_file), "--no-adjudicate", "--json")
    assert checked.returncode in (0, 3), checked.stderr
    stores = json.loads(checked.stdout)["warehouse"]
    assert len(stores) == 1 and stores[0].endswith("warehouse.duckdb"), stores
    out = smo(
        env,
        "sql",
        "--spec",
        str(spec_file),
        "select count(*) as n from consensus where control = 'policy'",
        "--format",
        "json",
    )
    assert out.returncode == 0, out.stderr
    labels = pd.read_parquet(Workspace.for_title("Synthetic project", tmp_path).labels)
    assert json.loads(out.stdout) == [{"n": labels.loc[labels["control"] == "policy", "task"].nunique()}]


def test_a_failed_flow_run_is_recorded_and_published(synthetic, tmp_path, monkeypatch):
    """The flows' `on_failure` hook (no Prefect server needed: it gets the run and state objects)."""
    import types
    import uuid
    from datetime import datetime

    from flows.warehouse_step import record_failure

    ws, _ = synthetic
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        (REPO / "specs" / "example.yaml")
        .read_text()
        .replace("title: Text moderation - example batch", "title: Synthetic project")
    )
    monkeypatch.setenv("SMO_HOME", str(tmp_path))
    run = types.SimpleNamespace(
        parameters={"params": {"spec": str(spec_file)}},
        id=uuid.uuid4(),
        start_time=datetime.now(UTC),
        expected_start_time=None,
    )
    record_failure(
        types.SimpleNamespace(name="pull-completions"),
        run,
        types.SimpleNamespace(type=types.SimpleNamespace(value="FAILED")),
    )
    assert wh.query(wh.target(ws), "select flow, state, flow_run_id from flow_runs")[1] == [
        ("pull-completions", "FAILED", str(run.id))
    ]
