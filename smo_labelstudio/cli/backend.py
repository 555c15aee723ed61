"""`smo backend`: the pre-annotation ML backend: train a model version, list versions, switch the served model
(the built-in one, a team's joblib pipeline or HTTP endpoint), connect a project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from smo_labelstudio.cli._errors import fail, reported
from smo_labelstudio.cli.stack import settings
from smo_labelstudio.stack import control as stack

app = typer.Typer(
    no_args_is_help=True, help="The pre-annotation ML backend: train, list versions, switch the model, connect."
)


def _model_store():
    """The stack's model store (the ML backend's model folder)."""
    from smo_labelstudio.model.modelstore import ModelStore  # noqa: PLC0415 - start-up time: scikit-learn
    from smo_labelstudio.stack.services import MLBackend  # noqa: PLC0415 - start-up time

    return ModelStore(MLBackend(settings()).model_dir)


@app.command("train")
@reported
def backend_train(
    data: Optional[str] = typer.Option(
        None,
        "--data",
        metavar="FILE",
        help="CSV or JSONL with text, labels (policy ids, |-separated), "
        "optional severity and language. Default: generated starter data.",
    ),
    validation: Optional[str] = typer.Option(
        None,
        "--validation",
        metavar="FILE",
        help="Freeze this file (same format as --data) as the fixed validation set every later promotion "
        "is judged on; its rows never train. Default: the set already frozen, else a fifth of the first data.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the first validation split and the model."),
    as_json: bool = typer.Option(False, "--json", help="Print the version's metrics as one JSON object."),
) -> None:
    """Train a model version; it is promoted only if its macro F1 on the fixed validation set is not worse
    than the current model's."""
    from smo_labelstudio.core.taxonomy import load_taxonomy  # noqa: PLC0415 - start-up time
    from smo_labelstudio.model.training import (  # noqa: PLC0415 - start-up time: scikit-learn
        read_training_file,
        starter_data,
        train_version,
    )

    labels = load_taxonomy().ids
    rows = read_training_file(Path(data), labels) if data else starter_data(seed=seed)
    held = read_training_file(Path(validation), labels) if validation else None
    metrics = train_version(
        _model_store(), rows, labels, seed=seed, source=data or "generated starter data", validation=held
    )
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    verdict = (
        "promoted"
        if metrics["promoted"]
        else (
            f"kept, not promoted (current {metrics['previous_version']} scores "
            f"{metrics['previous_macro_f1_same_rows']:.3f} on the same rows)"
        )
    )
    typer.echo(
        f"{metrics['version']}: macro F1 {metrics['macro_f1']:.3f}, micro F1 {metrics['micro_f1']:.3f} "
        f"on the {metrics['n_test']} rows of the fixed validation set ({metrics['n_train']} trained); {verdict}"
    )


@app.command("versions")
@reported
def backend_versions(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Every built-in model version kept on disk with its held-out metrics, the promoted one marked, and the model
    served when it is a team's (`smo backend use`)."""
    store = _model_store()
    rows = [store.metrics(v) for v in store.versions()]
    current = store.current_version()
    record = store.serving()
    serving = {"kind": record["kind"], "version": store.serving_version()}
    if as_json:
        typer.echo(json.dumps({"current": current, "serving": serving, "versions": rows}))
        return
    if record["kind"] != "builtin":
        typer.echo(f"serving {serving['version']} ({record['kind']}; `smo backend use --model builtin` to switch back)")
    if not rows:
        typer.echo(f"no model versions in {store.root}; `smo stack up` or `smo backend train` makes one")
    for m in rows:
        mark = "*" if m["version"] == current else " "
        typer.echo(
            f"{mark} {m['version']}  macro F1 {m['macro_f1']:.3f}  n={m['n_train']}+{m['n_test']}  "
            f"promoted={m['promoted']}  source: {m['source']}"
        )


@app.command("use")
@reported
def backend_use(
    model: str = typer.Option(
        ...,
        "--model",
        metavar="PATH|URL",
        help="`builtin` (the promoted built-in version), a scikit-learn pipeline saved with joblib in the trusted "
        "models folder (SMO_MODEL_FILES), or the http(s) URL of the team's model endpoint (token: SMO_MODEL_TOKEN).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the model card as one JSON object."),
) -> None:
    """Switch the model the backend serves: it is scored on the fixed validation set first (a model that fails,
    answers nonsense or is slower than SMO_MODEL_TIMEOUT is not switched to), its model card is kept in the model
    store, and every backend worker serves it from its next request on."""
    from smo_labelstudio.core.settings import get_settings, secret  # noqa: PLC0415 - start-up time
    from smo_labelstudio.core.taxonomy import load_taxonomy  # noqa: PLC0415 - start-up time
    from smo_labelstudio.model.serving import use_model  # noqa: PLC0415 - start-up time: scikit-learn
    from smo_labelstudio.stack.services import MLBackend  # noqa: PLC0415 - start-up time

    env = get_settings()
    card = use_model(
        _model_store(),
        model,
        load_taxonomy().ids,
        files_dir=MLBackend(settings()).model_files,
        timeout=env.model_timeout,
        token=secret(env.model_token),
    )
    if as_json:
        typer.echo(json.dumps(card))
        return
    m, c = card["metrics"], card["calibration"]
    f1 = f"{m['macro_f1']:.3f}" if m["macro_f1"] is not None else "n/a"
    ece = f"{c['ece']:.3f}" if c["ece"] is not None else "n/a"
    typer.echo(
        f"serving {card['version']} ({card['kind']}): macro F1 {f1}, ECE {ece} on the "
        f"{card['validation']['n']} rows of the fixed validation set; {card['changes']['summary']}"
    )


@app.command("connect")
@reported
def backend_connect(
    project: int = typer.Option(..., "--project", help="Label Studio project id."),
) -> None:
    """Register the stack's ML backend with a project: predictions for tasks opened without one, and
    retraining on its completed work (Label Studio's webhook only hints; the backend re-reads the project)."""
    from smo_labelstudio.labelstudio import client  # noqa: PLC0415 - start-up time: the SDK is slow to import

    current = settings()
    state = stack.load_state(current.home)
    backend = state.get("backend")
    if not backend:
        fail("no stack state; run `smo stack up` first")
    if not backend.get("admin_password"):
        fail("the stack state has no ML backend admin password (made before issue 16); run `smo stack up` once")
    url, token = client.connection_settings()
    result = client.connect_backend(
        url,
        token,
        project,
        stack.backend_url(stack._as_recorded(current, state)),
        (backend["user"], backend["password"]),
        ("admin", backend["admin_password"]),
    )
    typer.echo(
        f"project {project}: ML backend {result['ml_backend_id']} connected (state {result['state']}), "
        f"training webhook {result['webhook_id']}"
    )
