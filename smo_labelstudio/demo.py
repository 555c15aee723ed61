"""The demo slice: a project from a committed label config, demo items imported once, read back."""

from __future__ import annotations

from .client import connect, connection_settings, create_project, find_project, import_tasks, list_tasks
from .configs import labeling_interface

DEMO_TITLE = "SMO demo - text moderation"

# Our own short, harmless examples; the external id makes a re-run import nothing twice.
DEMO_ITEMS = [
    {"external_id": "demo-en-1", "language": "en", "text": "Have a great day, everyone!"},
    {"external_id": "demo-en-2", "language": "en", "text": "Click here to claim your free prize now!!!"},
    {"external_id": "demo-es-1", "language": "es", "text": "Gracias por compartir esta receta."},
    {"external_id": "demo-fr-1", "language": "fr", "text": "Ce vaccin contient des puces, partagez vite !"},
    {"external_id": "demo-ar-1", "language": "ar", "text": "شكرا لكم على هذا المقال الرائع"},
    {"external_id": "demo-de-1", "language": "de", "text": "Wir sehen uns morgen beim Training."},
]


def run() -> dict:
    """Ensure the demo project exists and holds every demo item exactly once."""
    url, _token = connection_settings()
    ls = connect()
    project_id = find_project(ls, DEMO_TITLE)
    ui = labeling_interface("text_moderation")
    if project_id is None:
        project_id = create_project(ls, DEMO_TITLE, ui["label_config"], instructions=ui["instructions"],
                                    description=f"Demo batch created by `smo demo`; taxonomy {ui['taxonomy_version']}, "
                                                f"guidelines {ui['guidelines_version']}.")
    present = {t["data"].get("external_id") for t in list_tasks(ls, project_id)}
    missing = [{"data": item} for item in DEMO_ITEMS if item["external_id"] not in present]
    imported = import_tasks(ls, project_id, missing)
    tasks = list_tasks(ls, project_id)
    return {
        "project_id": project_id,
        "project_url": f"{url}/projects/{project_id}/data",
        "imported": imported,
        "already_present": len(DEMO_ITEMS) - len(missing),
        "tasks": len(tasks),
        "taxonomy_version": ui["taxonomy_version"],
        "guidelines_version": ui["guidelines_version"],
    }
