"""The deployments `smo serve` (and so `smo stack up`) registers: one per flow of flows/, named `<flow>/smo`, each
with its form (core/forms.py: dropdowns of the specs, landing files and label configs) and the daily schedules of
prefect.yaml; and the loop that keeps the forms' dropdowns up to date while it serves them."""

from __future__ import annotations

import inspect
import logging
import re
import threading
from typing import Any

from smo_labelstudio.core.choices import spec_choices
from smo_labelstudio.core.forms import Choices, form_models
from smo_labelstudio.core.paths import REPO_ROOT

NAME = "smo"
FLOWS_DIR = REPO_ROOT / "flows"
# flow file -> (deployment description, daily cron (UTC) or None); the order the Prefect UI lists them in
FLOWS: dict[str, tuple[str, str | None]] = {
    "create_tasks": (
        "Turn a file of items into a labeling batch (validate, de-duplicate, gold, pre-annotate, import).",
        None,
    ),
    "pull_completions": ("Pull what annotators did into the workspace tables (incremental).", "0 6 * * *"),
    "quality_check": (
        "Gold, agreement, consensus and adjudication queue of one project; the quality report.",
        "30 6 * * *",
    ),
    "quality_scan": ("The quality pass of several projects at once, one partition per project.", None),
    "ops_report": ("Operations report (progress, ETA, wellness, model evaluation) of one project.", "0 7 * * *"),
    "export_dataset": ("Export an evaluated dataset (consensus, gates, splits, datasheet) from pulled labels.", None),
}
log = logging.getLogger("smo.deployments")


def form_schema(form: type) -> Any:
    """Prefect's parameter schema of a flow taking one argument `params` of type `form` (what the UI renders)."""
    from prefect.utilities.callables import generate_parameter_schema  # noqa: PLC0415 - start-up time

    param = inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=form)
    return generate_parameter_schema(inspect.Signature([param]), {})


def schemas(choices: Choices) -> dict[str, dict]:
    """Every flow's form schema for these choice lists, as the JSON the API stores."""
    return {name: form_schema(model).model_dump() for name, model in form_models(choices).items()}


def flow_name(name: str) -> str:
    """The Prefect flow name `flows/<name>.py` declares (`@flow(name="...")`), read from its text: registering a
    deployment needs the name and the entrypoint, not the flow, so the flows (and pandas, scikit-learn...) are
    imported only by the runs themselves, not by `smo serve` (about half its start-up time)."""
    found = re.search(r'@flow\(\s*name="([^"]+)"', (FLOWS_DIR / f"{name}.py").read_text(encoding="utf-8"))
    if not found:
        raise ValueError(f"flows/{name}.py declares no @flow(name=...)")
    return found.group(1)


def build(schedule_spec: str | None) -> list[Any]:
    """The deployments, forms filled from the folders now. The daily ones (pull, quality check, report) run for
    `schedule_spec`; without it their schedules are registered paused, on the specs folder's first spec."""
    from prefect.deployments.runner import EntrypointType, RunnerDeployment  # noqa: PLC0415 - start-up time
    from prefect.schedules import Cron  # noqa: PLC0415 - start-up time

    choices = Choices.now()
    forms = schemas(choices)
    target = schedule_spec or next(iter(spec_choices()), None)
    deployments = []
    for name, (description, cron) in FLOWS.items():
        schedules = []
        if cron and target:
            active = schedule_spec is not None
            schedules = [Cron(cron, timezone="UTC", active=active, parameters={"params": {"spec": target}})]
        deployment = RunnerDeployment(
            name=NAME,
            flow_name=flow_name(name),
            entrypoint=f"{FLOWS_DIR / name}.py:{name}",
            description=description,
            tags=["smo"],
            schedules=RunnerDeployment._construct_deployment_schedules(schedules=schedules),
            parameters={},
            enforce_parameter_schema=True,
        )
        deployment._path = "."
        deployment._entrypoint_type = EntrypointType.FILE_PATH
        deployment._parameter_openapi_schema = type(deployment._parameter_openapi_schema)(**forms[name])
        deployments.append(deployment)
    return deployments


def keep_forms_fresh(every: float, stop: threading.Event) -> threading.Thread:
    """A thread that looks at the folders every `every` seconds and, when a spec or landing file came or went,
    updates every deployment's form on the Prefect API (the UI's dropdowns follow within `every` seconds)."""

    def loop() -> None:
        last = Choices.now()
        while not stop.wait(every):
            try:
                now = Choices.now()
                if now != last:
                    update_forms(now)
                    last = now
            except Exception as exc:  # noqa: BLE001 - one failed look must not stop serving; the next one retries
                log.warning("could not update the forms: %s", exc)

    thread = threading.Thread(target=loop, name="smo-forms", daemon=True)
    thread.start()
    return thread


def update_forms(choices: Choices) -> None:
    """Write these choice lists' forms to every `<flow>/smo` deployment on the Prefect API."""
    from prefect import get_client  # noqa: PLC0415 - start-up time
    from prefect.client.schemas.actions import DeploymentUpdate  # noqa: PLC0415 - start-up time

    forms = schemas(choices)
    with get_client(sync_client=True) as client:
        for name, schema in forms.items():
            flow_name = name.replace("_", "-")
            deployment = client.read_deployment_by_name(f"{flow_name}/{NAME}")
            client.update_deployment(deployment.id, DeploymentUpdate(parameter_openapi_schema=schema))
