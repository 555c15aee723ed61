"""Reading a project's annotations out of Label Studio for a pull: an export snapshot of a data-manager view,
of every annotated task (a full pull) or of the tasks changed since a watermark (an incremental one)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from smo_labelstudio.labelstudio.client import LabelStudioError, _json, http_client, iter_tasks, project_counts

VIEW_TITLE = "smo pull"  # the one data-manager tab a pull keeps in a project, its filters set by each pull
OLD_VIEW_TITLES = ("smo incremental pull",)  # the same tab as earlier versions named it: renamed, not doubled
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # Label Studio's timestamps, and the pull's watermark


# tasks holding an annotation, kept or skipped (Label Studio's per-task counters)
ANNOTATED = {
    "conjunction": "or",
    "items": [
        {"filter": f"filter:tasks:{counter}", "operator": "greater", "type": "Number", "value": 0}
        for counter in ("total_annotations", "cancelled_annotations")
    ],
}


class SnapshotFailed(LabelStudioError):
    """An export snapshot ended without completing."""


class ProjectExports:
    """The few export calls a pull makes, on one client (close it when done)."""

    def __init__(self, url: str, token: str):
        self.http = http_client(url, token, timeout=1800)  # retries reads; SMO_LS_TIMEOUT overrides

    def close(self) -> None:
        self.http.close()

    def export_annotated(self, project: int) -> list[dict]:
        """Every task with an annotation, kept or skipped: a snapshot of a view of them, which Label Studio
        writes 1.4x faster than its export endpoint answers (14.4 s against 20.1-22.4 s for 10,000 tasks
        here). The view filters on each task's annotation counters; the snapshot's annotations are checked
        against the project's exact count, taken first, and a shortfall (a counter gone stale) is read again
        through the export endpoint, which lists annotated tasks from the annotations themselves."""
        expected = self.annotation_count(project)
        if expected == 0:
            return []
        tasks = self._snapshot(project, ANNOTATED, "smo full pull")
        if sum(len(task.get("annotations") or []) for task in tasks) >= expected:
            return tasks
        return _json(self.http.get(f"/api/projects/{project}/export", params={"exportType": "JSON"}))

    def users(self) -> tuple[dict[int, str], datetime]:
        """Annotator e-mails by user id, and Label Studio's clock when it answered."""
        resp = self.http.get("/api/users/")
        now = parsedate_to_datetime(resp.headers["Date"]) if "Date" in resp.headers else datetime.now(UTC)
        return {u["id"]: u.get("email") or u.get("username") or str(u["id"]) for u in _json(resp)}, now

    def changed_since(self, project: int, since: datetime) -> list[dict]:
        """Every task (annotated or not) updated after `since`."""
        changed = {
            "conjunction": "and",
            "items": [
                {
                    "filter": "filter:tasks:updated_at",
                    "operator": "greater",
                    "type": "Datetime",
                    "value": since.strftime(LS_TIME),
                }
            ],
        }
        return self._snapshot(project, changed, f"smo pull {since:%Y%m%dT%H%M%S}")

    def _snapshot(self, project: int, filters: dict, title: str) -> list[dict]:
        """The tasks of the pull's view, set to `filters`, through an export snapshot (deleted after reading)."""
        view = self._view(project, filters)
        snap = _json(
            self.http.post(
                f"/api/projects/{project}/exports/",
                json={
                    "title": title,
                    "task_filter_options": {"view": view},
                    "serialization_options": {"predictions": {"only_id": False}},
                },
            )
        )
        try:
            for _ in range(600):
                if snap.get("status") in ("completed", "failed"):
                    break
                time.sleep(0.5)
                snap = _json(self.http.get(f"/api/projects/{project}/exports/{snap['id']}"))
            if snap.get("status") != "completed":
                raise SnapshotFailed(f"Label Studio export snapshot {snap['id']} ended {snap.get('status')}")
            return _json(
                self.http.get(f"/api/projects/{project}/exports/{snap['id']}/download", params={"exportType": "JSON"})
            )
        finally:
            self.http.delete(f"/api/projects/{project}/exports/{snap['id']}")

    def annotation_count(self, project: int) -> int:
        """Annotations the project holds, cancelled ones included (what our annotations table counts)."""
        return sum(
            project_counts(self.http, project, "total_annotations_number", "skipped_annotations_number").values()
        )

    def task_ids(self, project: int) -> set[int]:
        """The id of every task of the project."""
        return {task["id"] for task in iter_tasks(self.http, project)}

    def _view(self, project: int, filters: dict) -> int:
        body = {"project": project, "data": {"title": VIEW_TITLE, "filters": filters, "hiddenColumns": {}}}
        views = [
            v
            for v in _json(self.http.get("/api/dm/views/", params={"project": project}))
            if (v.get("data") or {}).get("title") in (VIEW_TITLE, *OLD_VIEW_TITLES)
        ]
        if views:
            return _json(self.http.patch(f"/api/dm/views/{views[0]['id']}/", json=body))["id"]
        return _json(self.http.post("/api/dm/views/", json=body))["id"]
