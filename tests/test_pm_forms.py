"""The project manager's console (issue 19): the deployments the stack serves and their forms. Unit tests for the
choice lists (specs folder, landing folder, label configs), a project described in the form, and the validation
messages; then the real thing: the stack's `deployments` service on the session's Prefect and Label Studio, the
Prefect UI in headless Chromium listing the deployments, the create-tasks form filled in (spec and data from their
dropdowns) and run, and the tasks in Label Studio (the form's screenshot kept in test-artifacts/ui/)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml
from browser import CHROMIUM, FLAGS, artifacts

from smo_labelstudio.core import forms
from smo_labelstudio.core.choices import (
    NEW_PROJECT,
    NO_FILE,
    ChoiceError,
    NewProject,
    landing_choices,
    save_new_project,
    spec_choices,
)
from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.params import LaunchParams, PullParams, QualityScanParams, parse
from smo_labelstudio.core.spec import EXAMPLE_SPEC, load_spec
from smo_labelstudio.stack import control as stack
from smo_labelstudio.stack.services import Deployments, Settings, services

ARTIFACTS = artifacts("ui")
FLOW_NAMES = ("create-tasks", "pull-completions", "quality-check", "quality-scan", "ops-report", "export-dataset")


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A specs folder (the example spec and one more) and a landing folder (two data files, older first)."""
    specs, landing = tmp_path / "specs", tmp_path / "landing"
    specs.mkdir()
    landing.mkdir()
    shutil.copy(EXAMPLE_SPEC, specs / "example.yaml")
    shutil.copy(EXAMPLE_SPEC, specs / "another.yml")
    (specs / "notes.txt").write_text("not a spec")
    (specs / ".hidden.yaml").write_text("title: x")
    (landing / "old.csv").write_text("id,text\n1,a\n")
    os.utime(landing / "old.csv", (1_000_000, 1_000_000))
    (landing / "new.jsonl").write_text('{"id": "1", "text": "a"}\n')
    (landing / "readme.md").write_text("not data")
    monkeypatch.setenv("SMO_SPECS_DIR", str(specs))
    monkeypatch.setenv("SMO_LANDING_DIR", str(landing))
    return specs, landing


# -- choice lists ------------------------------------------------------------------------------------------------
def test_choice_lists_are_the_folders_files(folders):
    assert spec_choices() == ["example.yaml", "another.yml"]  # the example first, then by name; no dotfiles
    assert landing_choices() == ["new.jsonl", "old.csv"]  # newest first: the file just dropped is the default


def test_forms_offer_the_choice_lists_as_dropdowns_with_defaults_and_descriptions(folders):
    from smo_labelstudio.cli.deployments import schemas

    c = forms.Choices.now()
    models = forms.form_models(c)
    assert set(models) == {"create_tasks", "pull_completions", "quality_check", "quality_scan", "ops_report",
                           "export_dataset"}  # fmt: skip
    for name, model in models.items():
        assert forms.missing_descriptions(model) == [], name
    launch = schemas(c)["create_tasks"]["definitions"]
    props = launch["CreateTasksForm"]["properties"]
    assert props["spec"]["enum"] == ["example.yaml", "another.yml", NEW_PROJECT]
    assert props["spec"]["default"] == "example.yaml"
    assert props["data"]["enum"] == ["new.jsonl", "old.csv", NO_FILE] and props["data"]["default"] == "new.jsonl"
    assert props["gold"]["enum"] == [NO_FILE, "new.jsonl", "old.csv"] and props["gold"]["default"] == NO_FILE
    assert launch["NewProjectForm"]["properties"]["config"]["enum"] == ["image_moderation", "social_post",
                                                                        "text_moderation"]  # fmt: skip
    pull = schemas(c)["pull_completions"]["definitions"]["PullForm"]["properties"]
    assert pull["spec"]["enum"] == ["example.yaml", "another.yml"]  # no new project outside create-tasks
    scan = schemas(c)["quality_scan"]["definitions"]["QualityScanForm"]["properties"]
    assert scan["specs"]["items"]["enum"] == ["example.yaml", "another.yml"]


def test_an_empty_folder_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SMO_SPECS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("SMO_LANDING_DIR", str(tmp_path / "none"))
    props = forms.launch_form(forms.Choices.now()).model_json_schema()["properties"]
    assert props["data"]["enum"] == [NO_FILE]
    pull = forms.form_models(forms.Choices.now())["pull_completions"].model_json_schema()["properties"]
    assert pull["spec"]["enum"] == [f"(no spec in {tmp_path / 'none'})"]


# -- what the forms send, as the flows read it ------------------------------------------------------------------
def test_names_from_the_form_are_the_folders_files_and_paths_stay_paths(folders, tmp_path):
    specs, landing = folders
    p = parse(LaunchParams, spec="another.yml", data="old.csv", gold=NO_FILE)
    assert (p.spec, p.data, p.gold) == (str(specs / "another.yml"), str(landing / "old.csv"), None)
    own = tmp_path / "mine.yaml"
    shutil.copy(EXAMPLE_SPEC, own)
    assert parse(PullParams, spec=str(own)).spec == str(own)  # the CLI's path, unchanged
    assert parse(QualityScanParams, specs=["example.yaml", str(own)]).specs == [str(specs / "example.yaml"), str(own)]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"spec": NEW_PROJECT, "data": "old.csv"}, "describe the project in new_project"),
        ({"spec": "example.yaml", "data": "old.csv", "new_project": {"title": "T"}}, "choose '(new project"),
        ({"spec": NEW_PROJECT, "data": "old.csv", "new_project": {"title": "T", "config": "nope"}}, "not a label conf"),
        ({"spec": NEW_PROJECT, "data": "old.csv", "new_project": {"title": "  "}}, "the title is empty"),
        ({"spec": NEW_PROJECT, "data": "old.csv", "new_project": {"title": "T", "gold_rate": 0.9}}, "gold_rate"),
        ({"spec": NEW_PROJECT, "data": "old.csv", "new_project": {"title": "T", "deadline": "soon"}}, "deadline"),
        ({"spec": NEW_PROJECT, "data": "old.csv", "new_project": {"title": "T", "overlap": 3}}, "not permitted"),
    ],
)
def test_form_mistakes_are_one_line_naming_the_field(folders, values, message):
    with pytest.raises(ConfigError) as caught:
        parse(LaunchParams, **values)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_new_project_is_saved_as_a_spec_the_other_forms_then_offer(folders):
    specs, _ = folders
    p = parse(
        LaunchParams,
        spec=NEW_PROJECT,
        data="old.csv",
        new_project={"title": "Hate speech: Q1", "config": "social_post", "annotators": 2, "deadline": "2027-01-31"},
    )
    saved = p.with_spec_file()
    assert saved.new_project is None and saved.spec == str(specs / "hate-speech-q1.yaml")
    spec = load_spec(Path(saved.spec))
    assert (spec.title, spec.config, spec.overlap.annotators, spec.deadline) == (
        "Hate speech: Q1",
        "social_post",
        2,
        "2027-01-31",
    )
    assert "hate-speech-q1.yaml" in spec_choices()
    assert p.with_spec_file().spec == saved.spec  # the same project again: the same file, untouched
    with pytest.raises(ChoiceError, match="with other settings; choose hate-speech-q1.yaml"):
        save_new_project(NewProject(title="Hate speech: Q1", annotators=3))
    with pytest.raises(ChoiceError, match="already holds another project"):
        save_new_project(NewProject(title="hate speech q1"))  # slugs alike, another title


def test_every_flow_is_deployed_under_the_name_its_file_declares():
    from smo_labelstudio.cli.deployments import FLOWS, FLOWS_DIR, flow_name

    declared = {p.stem for p in FLOWS_DIR.glob("*.py") if "@flow(" in p.read_text()}
    assert declared == set(FLOWS)
    assert [flow_name(n) for n in FLOWS] == list(FLOW_NAMES)


def test_the_stack_runs_the_deployments_last_pointed_at_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("SMO_LS_URL", "http://elsewhere:8080")
    settings = Settings(home=tmp_path, prefect_port=4999)
    last = services(settings)[-1]
    assert isinstance(last, Deployments) and last.port is None
    env = last.environ({})
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4999/api" and env["SMO_HOME"] == str(tmp_path)
    assert "SMO_LS_URL" not in env  # Label Studio is the stack's own, from its state file
    assert last.argv()[0][-1] == "serve"


# -- the real thing ----------------------------------------------------------------------------------------------
def _wait(what: str, check, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _choose(page, current: str, wanted: str) -> None:
    """Pick `wanted` in the dropdown now showing `current` (Prefect's select opens from the keyboard)."""
    button = page.get_by_role("button", name=current, exact=True)
    button.focus()
    page.keyboard.press("ArrowDown")
    page.get_by_role("option", name=wanted, exact=True).click()
    page.get_by_role("button", name=wanted, exact=True).wait_for()


def test_stack_deployments_listed_create_tasks_form_filled_in_chromium_tasks_in_label_studio(
    label_studio, prefect_api, test_stack_settings, tmp_path, unique, monkeypatch
):
    from playwright.sync_api import sync_playwright

    specs, landing = tmp_path / "specs", tmp_path / "landing"
    specs.mkdir()
    landing.mkdir()
    title = f"PM form {unique}"
    spec = yaml.safe_load(EXAMPLE_SPEC.read_text())
    spec["title"] = title
    (specs / f"pm-{unique}.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(EXAMPLE_SPEC, specs / "example.yaml")
    rows = [f'f{i},"Form item number {i} about the weather",en' for i in range(6)]
    (landing / "older.csv").write_text("id,text,language\nx1,an older file,en\n")
    os.utime(landing / "older.csv", (1_000_000, 1_000_000))
    (landing / f"batch-{unique}.csv").write_text("id,text,language\n" + "\n".join(rows) + "\n")
    monkeypatch.setenv("SMO_SPECS_DIR", str(specs))
    monkeypatch.setenv("SMO_LANDING_DIR", str(landing))

    stack.up(test_stack_settings, print, only=("deployments",))
    try:
        ui = prefect_api.removesuffix("/api")

        def served():
            r = httpx.get(f"{prefect_api}/deployments/name/create-tasks/smo", timeout=60)
            ok = r.status_code == 200 and "CreateTasksForm" in str(r.json()["parameter_openapi_schema"])
            return r.json() if ok and r.json()["status"] == "READY" else None

        started = time.monotonic()
        deployment = _wait("the served create-tasks deployment", served)
        print(f"deployments served {time.monotonic() - started:.1f} s after the service started")
        # The server enforces the form: a spec that is not in the dropdown is refused with the choices named.
        bad = httpx.post(
            f"{prefect_api}/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"params": {"spec": "../../etc/passwd", "data": "older.csv"}}},
            timeout=60,
        )
        assert bad.status_code == 409 and "is not one of" in bad.text

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 1900})
                page.goto(f"{ui}/deployments")
                for name in FLOW_NAMES:
                    page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
                page.goto(f"{ui}/deployments/deployment/{deployment['id']}/run")
                page.get_by_text("Spec (Optional)").wait_for(timeout=60_000)
                _choose(page, "example.yaml", f"pm-{unique}.yaml")
                _choose(page, f"batch-{unique}.csv", "older.csv")  # newest first: the batch is the default...
                _choose(page, "older.csv", f"batch-{unique}.csv")  # ...chosen back from the dropdown
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "create-tasks-form.png"), full_page=True)
                page.get_by_role("button", name="Submit", exact=True).click()
                page.wait_for_url(lambda url: not url.endswith("/run"), timeout=60_000)  # back to the deployment
            finally:
                browser.close()

        def finished():
            runs = httpx.post(
                f"{prefect_api}/flow_runs/filter",
                json={"deployments": {"id": {"any_": [deployment["id"]]}}},
                timeout=60,
            ).json()
            done = [r for r in runs if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
            return done[0] if done else None

        run = _wait("the flow run", finished, timeout=300)
        print(f"flow run done {time.monotonic() - started:.1f} s after the service started")
        assert run["state"]["type"] == "COMPLETED", run["state"]
        assert run["parameters"]["params"]["spec"] == f"pm-{unique}.yaml"
        assert run["parameters"]["params"]["data"] == f"batch-{unique}.csv"
        projects = httpx.get(
            f"{label_studio.url}/api/projects", params={"page_size": 1000}, headers=label_studio.headers, timeout=60
        ).json()
        project = next(p for p in projects.get("results", projects) if p["title"] == title)
        tasks = httpx.get(
            f"{label_studio.url}/api/tasks",
            params={"project": project["id"], "page_size": 100, "fields": "all"},
            headers=label_studio.headers,
            timeout=60,
        ).json()
        texts = {t["data"]["text"] for t in tasks["tasks"]}
        assert {f"Form item number {i} about the weather" for i in range(6)} <= texts
        assert "an older file" not in texts
    finally:
        stack.down(test_stack_settings, print, only=("deployments",))
