"""A small synthetic workspace for warehouse tests: one plan (three languages, one detected, one gold),
predictions, nine annotations on two days by three annotators (one skipped), gold answers. No Label Studio."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg

from smo_labelstudio.core.postgres import PgUrl, create_database, drop_database
from smo_labelstudio.core.workspace import ANNOTATION_COLUMNS, LABEL_COLUMNS, Workspace, write_json, write_parquet


def synthetic_workspace(root: Path) -> Workspace:
    ws = Workspace(root / "workspaces" / "synthetic-project")
    plan_dir = ws.runs / "abc123def456"
    texts = {
        "t1": ("you people should leave", "en", False, None),
        "t2": ("hola amigos", "es", True, 0.93),
        "t3": ("bonjour", "fr", False, None),
        "g1": ("buy followers now", "en", False, None),
    }
    rows = []
    for i, (eid, (text, lang, det, conf)) in enumerate(texts.items()):
        rows.append(
            {
                "row": i + 1,
                "external_id": eid,
                "item_id": f"it-{eid}",
                "content_hash": eid,
                "text": text,
                "image": None,
                "language": lang,
                "source": None,
                "is_gold": eid.startswith("g"),
                "language_detected": det,
                "language_confidence": conf,
                "batch": 0,
            }
        )
    write_parquet(plan_dir / "plan.parquet", pd.DataFrame(rows))
    write_json(
        plan_dir / "plan.json",
        {
            "plan_id": "abc123def456",
            "counts": {"rows_read": 5},
            "data": "/x/items.csv",
            "gold": "/x/gold.csv",
            "created": 1764000000.0,
        },
    )
    write_json(
        plan_dir / "manifest.json",
        {
            "rows_read": 5,
            "imported": 3,
            "duplicates": 1,
            "quarantined": 1,
            "already_present": 0,
            "sampled_out": 0,
            "pending": 0,
            "gold": 1,
            "predictions": 4,
            "missing_predictions": 0,
            "complete": True,
            "counts_add_up": True,
            "project_url": "http://127.0.0.1:8080/projects/7/data",
            "versions": {
                "taxonomy": "2026.11.1",
                "guidelines": "2026.11.1",
                "config": "text_moderation",
                "model": "m1",
            },
        },
    )
    write_parquet(
        plan_dir / "predictions" / "batch-00000.parquet",
        pd.DataFrame(
            {
                "item_id": [f"it-{e}" for e in texts],
                "model_version": "m1",
                "score": [0.9, 0.8, 0.7, 0.6],
                "policy": ["hate", "no_violation", "no_violation", "spam_scams"],
                "severity": ["3", None, None, "1"],
                "label_scores": "{}",
            }
        ),
    )
    write_parquet(
        ws.gold_answers,
        pd.DataFrame(
            {
                "external_id": ["gold:g1", "gold:g1"],
                "item_id": "it-g1",
                "control": ["policy", "severity"],
                "label": ["spam_scams", "1"],
            }
        ),
    )
    answers = [  # external_id, task, annotator, policies, day, lead, cancelled, changed
        ("t1", 11, "a@x", ["hate"], "2026-11-20T10:00:00Z", 30.0, False, False),
        ("t1", 11, "b@x", ["hate", "harassment"], "2026-11-21T10:00:00Z", 50.0, False, True),
        ("t1", 11, "c@x", ["hate"], "2026-11-21T11:00:00Z", 20.0, False, False),
        ("t2", 12, "a@x", ["no_violation"], "2026-11-20T12:00:00Z", 10.0, False, False),
        ("t2", 12, "b@x", ["no_violation"], "2026-11-21T12:00:00Z", 12.0, False, False),
        ("t3", 13, "a@x", [], "2026-11-21T13:00:00Z", 5.0, True, None),
        ("gold:g1", 14, "a@x", ["spam_scams"], "2026-11-20T14:00:00Z", 8.0, False, False),
        ("gold:g1", 14, "b@x", ["hate"], "2026-11-21T14:00:00Z", 9.0, False, True),
        ("gold:g1", 14, "c@x", ["spam_scams"], "2026-11-21T15:00:00Z", 7.0, False, False),
    ]
    ann, lab = [], []
    lang = {"t1": "en", "t2": "es", "t3": "fr", "gold:g1": "en"}
    for i, (eid, task, who, pols, ts, lead, canc, changed) in enumerate(answers, start=100):
        ann.append(
            {
                "project": 7,
                "task": task,
                "external_id": eid,
                "annotation_id": i,
                "annotator": who,
                "created_at": ts,
                "updated_at": ts,
                "lead_time": lead,
                "was_cancelled": canc,
                "is_gold": eid.startswith("gold:"),
                "prediction_model_version": "m1",
                "changed_prediction": changed,
                "language": lang[eid],
            }
        )
        for p in pols:
            lab.append(
                {
                    "project": 7,
                    "task": task,
                    "external_id": eid,
                    "annotation_id": i,
                    "annotator": who,
                    "control": "policy",
                    "label": p,
                    "start": None,
                    "end": None,
                    "is_gold": eid.startswith("gold:"),
                    "language": lang[eid],
                }
            )
    a = pd.DataFrame(ann, columns=ANNOTATION_COLUMNS)
    for c in ("created_at", "updated_at"):
        a[c] = pd.to_datetime(a[c], utc=True)
    write_parquet(ws.annotations, a)
    labels = pd.DataFrame(lab, columns=LABEL_COLUMNS)
    labels[["start", "end"]] = labels[["start", "end"]].astype("float64")
    write_parquet(ws.labels, labels)
    write_json(
        ws.project_file,
        {
            "project_id": 7,
            "url": "http://127.0.0.1:8080/projects/7/data",
            "title": "Synthetic project",
            "config": "text_moderation",
        },
    )
    return ws


PG_SERVER = "postgresql://root@127.0.0.1:5432"  # this machine's PostgreSQL, trust auth


@contextmanager
def owned_database(name: str) -> Iterator[str]:
    """A database owned by a login role that is not a superuser (`smo sql` refuses to query as one), as a team's
    warehouse role would be; yields the owner's URL, and drops both afterwards."""
    owner = f"{name}_owner"
    admin = PgUrl.parse(f"{PG_SERVER}/postgres")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'create role "{owner}" login')
    create_database(admin.with_db(name))
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'alter database "{name}" owner to "{owner}"')
    try:
        yield f"postgresql://{owner}@127.0.0.1:5432/{name}"
    finally:
        drop_database(admin.with_db(name))
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            conn.execute(f'drop role if exists "{owner}"')
