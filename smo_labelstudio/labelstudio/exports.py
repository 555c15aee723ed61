"""Reading a project's annotations out of Label Studio for a pull: the full export, and an
incremental export snapshot of the tasks changed since a watermark (through a data-manager view)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from smo_labelstudio.labelstudio.client import LabelStudioError, _json, http_client, iter_tasks, project_counts

VIEW_TITLE = "smo incremental pull"
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # Label Studio's timestamps, and the pull's watermark


class SnapshotFailed(LabelStudioError):
    """An export snapshot ended without completing."""


class ProjectExports:
    """The few export calls a pull makes, on one client (close it when done)."""

    def __init__(self, url: str, token: str):
        self.http = http_client(url, token, timeout=1800)  # retries reads; SMO_LS_TIMEOUT overrides

    def close(self) -> None:
        self.http.close()

    def export_annotated(self, project: int) -> list[dict]:
        return _json(self.http.get(f"/api/projects/{project}/export", params={"exportType": "JSON"}))

    def users(self) -> tuple[dict[int, str], datetime]:
        """Annotator e-mails by user id, and Label Studio's clock when it answered."""
        resp = self.http.get("/api/users/")
        now = parsedate_to_datetime(resp.headers["Date"]) if "Date" in resp.headers else datetime.now(UTC)
        return {u["id"]: u.get("email") or u.get("username") or str(u["id"]) for u in _json(resp)}, now

    def changed_since(self, project: int, since: datetime) -> list[dict]:
        """Every task (annotated or not) updated after `since`, through a view and an export snapshot."""
        view = self._view(project, since)
        snap = _json(
            self.http.post(
                f"/api/projects/{project}/exports/",
                json={
                    "title": f"smo pull {since:%Y%m%dT%H%M%S}",
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

    def _view(self, project: int, since: datetime) -> int:
        flt = {
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
        body = {"project": project, "data": {"title": VIEW_TITLE, "filters": flt, "hiddenColumns": {}}}
        views = [
            v
            for v in _json(self.http.get("/api/dm/views/", params={"project": project}))
            if (v.get("data") or {}).get("title") == VIEW_TITLE
        ]
        if views:
            return _json(self.http.patch(f"/api/dm/views/{views[0]['id']}/", json=body))["id"]
        return _json(self.http.post("/api/dm/views/", json=body))["id"]
