"""The demo: the whole line on generated multilingual items, on the running stack.

launch (validate, de-duplicate, gold, pre-annotate, import, connect the backend) -> simulated annotators (real Label
Studio users) -> pull -> quality check, each a Prefect flow run or a library call you can open
afterwards. Sized for Label Studio's few annotation writes per second: under a minute in all.
Re-running is harmless: nothing is imported or annotated twice. `smo demo` is the command.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import typer
import yaml

from smo_labelstudio.cli._errors import reported
from smo_labelstudio.cli._flows import load_flow, prefect_ready
from smo_labelstudio.core.choices import landing_dir
from smo_labelstudio.core.params import (
    ExportDatasetParams,
    LaunchParams,
    OpsReportParams,
    PullParams,
    QualityCheckParams,
)
from smo_labelstudio.core.paths import state_home
from smo_labelstudio.labelstudio.configs import labeling_interface

DEMO_TITLE = "SMO demo - text moderation"
N_ITEMS = 48
N_GOLD = 12


def demo_files(folder: Path) -> dict[str, Path]:
    """Write the demo's spec, items (with a few bad rows), gold items and the simulation's truth."""
    import pandas as pd  # noqa: PLC0415 - start-up time: every `smo` command imports this module

    from smo_labelstudio.model.training import starter_data  # noqa: PLC0415 - start-up time: scikit-learn

    folder.mkdir(parents=True, exist_ok=True)
    rows = starter_data(n_per_label=8, seed=11).sample(frac=1, random_state=1).reset_index(drop=True)
    rows = rows.drop_duplicates("text").reset_index(drop=True)
    items, gold = rows.iloc[:N_ITEMS].copy(), rows.iloc[N_ITEMS : N_ITEMS + N_GOLD].copy()
    items["id"] = [f"post-{i:04d}" for i in range(len(items))]
    gold["id"] = [f"gold-{i:03d}" for i in range(len(gold))]
    bad = pd.DataFrame(
        [
            {"id": "post-bad-1", "text": "", "language": "en"},
            {"id": "post-bad-2", "text": "ein Text ohne gültige Sprache", "language": "xx"},
            {"id": "post-0000", "text": items["text"].iloc[0], "language": items["language"].iloc[0]},
        ]
    )
    files = {name: folder / f"{name}.csv" for name in ("items", "gold", "truth")}
    pd.concat([items[["id", "text", "language"]], bad]).to_csv(files["items"], index=False)
    gold.assign(policy=gold["labels"].str.join("|"), severity=gold["severity"].astype("Int64"))[
        ["id", "text", "language", "policy", "severity"]
    ].to_csv(files["gold"], index=False)
    items.assign(
        external_id=items["id"], labels=items["labels"].str.join("|"), severity=items["severity"].astype("Int64")
    )[["external_id", "labels", "severity"]].to_csv(files["truth"], index=False)
    ui = labeling_interface("text_moderation")
    spec = {
        "title": DEMO_TITLE,
        "config": "text_moderation",
        "guidelines_version": ui["taxonomy_version"],
        "columns": {"id": "id", "text": "text", "language": "language"},
        "overlap": {"annotators": 1, "share": 0.5, "extra_annotators": 3},
        "gold_rate": 0.2,
        "quality": {"min_gold_accuracy": 0.7, "min_gold_answers": 3, "min_alpha": 0.5, "min_confidence": 0.7},
    }
    files["spec"] = folder / "spec.yaml"
    files["spec"].write_text(
        "# The demo project's spec (written by `smo demo`).\n" + yaml.safe_dump(spec, sort_keys=False)
    )
    return files


def run(say: Callable[[str], None] = print) -> dict:
    """Run the whole line once on the stack and return what happened and where to look."""
    from smo_labelstudio.core.workspace import Workspace  # noqa: PLC0415 - start-up time: pandas
    from smo_labelstudio.labelstudio import client  # noqa: PLC0415 - start-up time: the SDK is slow to import
    from smo_labelstudio.simulation.simulate import (  # noqa: PLC0415 - start-up time
        SimulationSettings,
        simulate,
    )

    files = demo_files(state_home() / "demo")
    landing = landing_dir()  # the create-tasks form in the Prefect UI offers them from here (demo-items.csv)
    landing.mkdir(parents=True, exist_ok=True)
    for kind in ("items", "gold"):
        shutil.copyfile(files[kind], landing / f"demo-{kind}.csv")
    url, token = client.connection_settings()
    say("1/4 launch: validate, de-duplicate, mix in gold, pre-annotate, import")
    manifest = load_flow("create_tasks")(
        LaunchParams(spec=str(files["spec"]), data=str(files["items"]), gold=str(files["gold"]))
    )
    say("2/4 simulated annotators answer as their own Label Studio users")
    sim = simulate(
        manifest["project_id"],
        SimulationSettings(annotators=3, accuracy=0.85, truth_file=files["truth"]),
        Workspace.for_title(DEMO_TITLE),
        url,
        token,
    )
    say("3/4 pull completions into the workspace tables")
    pulled = load_flow("pull_completions")(PullParams(spec=str(files["spec"])))
    say("4/4 quality check: gold, agreement, consensus, report")
    quality = load_flow("quality_check")(QualityCheckParams(spec=str(files["spec"]), n_boot=200))
    say("then the operations report (progress, throughput, wellness, model evaluation) and the dataset export")
    ops = load_flow("ops_report")(OpsReportParams(spec=str(files["spec"]), n_boot=200))
    exported = load_flow("export_dataset")(
        ExportDatasetParams(spec=str(files["spec"]), out=str(Workspace.for_title(DEMO_TITLE).root / "export"))
    )
    tasks = manifest["tasks_imported_total"]
    return {
        "project_id": manifest["project_id"],
        "project_url": manifest["project_url"],
        "imported": manifest["imported"] + manifest["gold"],
        "already_present": manifest["already_present"],
        "quarantined": manifest["quarantined"],
        "duplicates": manifest["duplicates"],
        "tasks": tasks,
        "annotations_written": sim["annotations_written"],
        "annotations": pulled["annotations"],
        "quality_passed": quality["passed"],
        "report": quality["report"]["html"],
        "ops_report": ops["report"]["html"],
        "export": exported["out"],
        "prefect_url": os.environ.get("PREFECT_API_URL", "").removesuffix("/api") + "/runs",
        "workspace": manifest["workspace"],
    }


@reported
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """The whole line on generated items: launch, simulated annotators, pull, quality check."""
    prefect_ready()
    summary = run(say=(lambda _m: None) if as_json else typer.echo)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    typer.echo("")
    typer.echo(
        f"project {summary['project_id']}: {summary['imported']} imported now, {summary['already_present']} "
        f"already there, {summary['duplicates']} duplicates and {summary['quarantined']} quarantined rows "
        f"skipped; {summary['annotations_written']} annotations written now, {summary['annotations']} pulled"
    )
    typer.echo(f"Label Studio  {summary['project_url']}")
    typer.echo(f"Prefect runs  {summary['prefect_url']}")
    typer.echo(f"Quality       {'passed' if summary['quality_passed'] else 'a gate failed'}: {summary['report']}")
    typer.echo(f"Operations    {summary['ops_report']}")
    typer.echo(f"Dataset       {summary['export']} (datasheet.md)")
    typer.echo(f"Workspace     {summary['workspace']}")
