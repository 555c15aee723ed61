"""Hostile values in the project manager's forms (issue 19): a new project's title that tries to leave the specs
folder, breaks the YAML it is saved in or dresses up as another project; landing file names with markup, quotes
and path parts; a form value naming a file outside the folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from smo_labelstudio.core import forms
from smo_labelstudio.core.choices import (
    NEW_PROJECT,
    ChoiceError,
    NewProject,
    landing_choices,
    resolve_landing,
    save_new_project,
)
from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.params import LaunchParams, parse
from smo_labelstudio.core.spec import EXAMPLE_SPEC, load_spec


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    specs, landing = tmp_path / "specs", tmp_path / "landing"
    specs.mkdir()
    landing.mkdir()
    monkeypatch.setenv("SMO_SPECS_DIR", str(specs))
    monkeypatch.setenv("SMO_LANDING_DIR", str(landing))
    return specs, landing


@pytest.mark.parametrize(
    "title",
    [
        "../../../etc/passwd",
        "/etc/cron.d/evil",
        'Hate: "quoted" [list] {map} # not a comment\n--- !!python/object:os.system',
        '=HYPERLINK("http://evil")',
        "<script>alert(1)</script> ترجمة",
    ],
)
def test_a_hostile_title_stays_a_title_in_a_file_inside_the_specs_folder(folders, title):
    specs, _ = folders
    path = save_new_project(NewProject(title=title))
    assert path.parent == specs and path.suffix == ".yaml" and "/" not in path.stem and not path.stem.startswith(".")
    assert load_spec(path).title == title.strip()  # safe_dump quotes it; safe_load never builds objects
    assert {p.name for p in specs.iterdir()} == {path.name}


def test_a_new_project_cannot_take_over_an_existing_spec_file(folders):
    specs, _ = folders
    shutil.copy(EXAMPLE_SPEC, specs / "text-moderation-example-batch.yaml")
    before = (specs / "text-moderation-example-batch.yaml").read_text()
    with pytest.raises(ChoiceError, match="other settings"):  # same title, other settings: the file is not rewritten
        save_new_project(NewProject(title=load_spec(specs / "text-moderation-example-batch.yaml").title, gold_rate=0.3))
    with pytest.raises(ChoiceError, match="another project"):  # another title slugging alike
        save_new_project(NewProject(title="TEXT moderation: example batch!"))
    assert (specs / "text-moderation-example-batch.yaml").read_text() == before


def test_landing_names_with_markup_and_quotes_are_offered_verbatim_and_stay_in_the_folder(folders):
    _, landing = folders
    odd = ['<img src=x onerror="alert(1)">.csv', 'it\'s "quoted".jsonl', "--help.csv", "=cmd.parquet"]
    for name in odd:
        (landing / name).write_text("id,text\n1,a\n")
    (landing / "sub").mkdir()
    (landing / "sub" / "hidden.csv").write_text("id,text\n")
    assert sorted(landing_choices()) == sorted(odd)  # files of the folder itself only
    form = forms.launch_form(forms.Choices.now()).model_json_schema()
    assert sorted(form["properties"]["data"]["enum"][:-1]) == sorted(odd)
    for name in odd:
        assert resolve_landing(name) == str(landing / name)


def test_a_name_with_a_path_part_is_never_looked_up_in_the_folders(folders, tmp_path):
    _, landing = folders
    (landing / "items.csv").write_text("id,text\n")
    # a path part means "this path" (the CLI's), never a file of the landing or specs folder
    assert resolve_landing("../landing/items.csv") == "../landing/items.csv"
    with pytest.raises(ConfigError, match="new_project.columns: Extra inputs are not permitted"):  # no smuggled keys
        parse(LaunchParams, spec=NEW_PROJECT, data="items.csv", new_project={"title": "T", "columns": {}})
