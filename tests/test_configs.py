"""Taxonomy, generated label configs and guidelines stay in step; Label Studio accepts every config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smo_labelstudio.core.paths import REPO_ROOT
from smo_labelstudio.core.spec import EXAMPLE_SPEC, SpecError, load_spec
from smo_labelstudio.core.taxonomy import TaxonomyError, load_taxonomy
from smo_labelstudio.labelstudio import client, configs
from smo_labelstudio.labelstudio.label_config import KINDS, config_labels

SMO = str(Path(sys.executable).parent / "smo")


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """A copy of the taxonomy, configs and guidelines to edit freely."""
    for name in ("label_configs", "guidelines"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name)
    shutil.copy(REPO_ROOT / "taxonomy.yaml", tmp_path / "taxonomy.yaml")
    return tmp_path


def test_committed_files_are_what_the_taxonomy_generates():
    assert configs.check() == []
    assert set(configs.list_configs()) == set(KINDS)


def test_every_policy_is_a_choice_in_every_config_and_a_span_label_in_text_configs():
    tax = load_taxonomy()
    for kind in KINDS:
        labels = config_labels((REPO_ROOT / "label_configs" / f"{kind}.xml").read_text())
        assert labels["policy"] == set(tax.ids)
        assert labels["severity"] == {str(s.level) for s in tax.severity}
        assert labels["escalation"] == {"needs_escalation"}
        if kind != "image_moderation":
            assert labels["spans"] == {p.id for p in tax.violations}
        assert tax.version in (REPO_ROOT / "label_configs" / f"{kind}.xml").read_text()


def test_changing_a_definition_changes_config_and_guidelines_together(project_copy):
    tax_file = project_copy / "taxonomy.yaml"
    raw = yaml.safe_load(tax_file.read_text())
    hate = next(p for p in raw["policies"] if p["id"] == "hate")
    hate["definition"] = "A brand new definition of hate for this test."
    tax_file.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))

    assert configs.check(project_copy)  # stale before the build
    changed = {p.relative_to(project_copy).as_posix() for p in configs.build(project_copy)}
    assert {
        "label_configs/text_moderation.xml",
        "label_configs/image_moderation.xml",
        "label_configs/social_post.xml",
        "guidelines/hate.md",
        "guidelines/overview.md",
    } <= changed
    assert "A brand new definition of hate" in (project_copy / "label_configs/text_moderation.xml").read_text()
    assert "A brand new definition of hate" in (project_copy / "guidelines/hate.md").read_text()
    assert configs.check(project_copy) == []
    assert configs.build(project_copy) == []  # a second build changes nothing


def test_check_fails_on_a_label_without_a_guideline_section(project_copy):
    (project_copy / "guidelines" / "hate.md").unlink()
    problems = configs.check(project_copy)
    assert any("'hate' has no guideline section" in p for p in problems), problems


def test_check_fails_on_a_guideline_section_without_a_label(project_copy):
    (project_copy / "guidelines" / "gambling.md").write_text("# Gambling\n")
    problems = configs.check(project_copy)
    assert any("gambling.md: guideline section has no label" in p for p in problems), problems


def test_check_fails_on_a_hand_added_label(project_copy):
    path = project_copy / "label_configs" / "text_moderation.xml"
    path.write_text(
        path.read_text().replace(
            '<Choice value="Hate" alias="hate"',
            '<Choice value="Gambling" alias="gambling" /><Choice value="Hate" alias="hate"',
        )
    )
    problems = configs.check(project_copy)
    assert any("'gambling' has no guideline section" in p for p in problems)
    assert any("'gambling' is not in taxonomy.yaml" in p for p in problems)


def test_a_removed_policy_takes_its_generated_page_with_it(project_copy):
    tax_file = project_copy / "taxonomy.yaml"
    raw = yaml.safe_load(tax_file.read_text())
    raw["policies"] = [p for p in raw["policies"] if p["id"] != "misinformation"]
    tax_file.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    configs.build(project_copy)
    assert not (project_copy / "guidelines" / "misinformation.md").exists()
    assert configs.check(project_copy) == []


def test_invalid_taxonomy_names_the_file_and_field(project_copy):
    tax_file = project_copy / "taxonomy.yaml"
    raw = yaml.safe_load(tax_file.read_text())
    raw["policies"].append(dict(raw["policies"][0]))
    tax_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(TaxonomyError, match="taxonomy.yaml: policies: .*duplicate policy ids: violent_extremism"):
        load_taxonomy(tax_file)


def test_example_spec_loads_and_bad_specs_say_where(tmp_path):
    spec = load_spec(EXAMPLE_SPEC)
    assert spec.config in configs.list_configs() and spec.guidelines_version == load_taxonomy().version
    raw = yaml.safe_load(EXAMPLE_SPEC.read_text())
    cases = {
        "overlapp": ("overlapp", {**raw, "overlapp": 1}),
        "config": ("nope", {**raw, "config": "nope"}),
        "gold_rate": ("gold_rate", {**raw, "gold_rate": 2}),
        "version": ("1999.1", {**raw, "guidelines_version": "1999.1"}),
    }
    for name, (needle, content) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(content))
        with pytest.raises(SpecError, match=needle) as err:
            load_spec(path)
        assert str(path) in str(err.value)


def test_label_studio_validates_every_config_and_refuses_a_broken_one(label_studio):
    for name in configs.list_configs():
        xml = (REPO_ROOT / "label_configs" / f"{name}.xml").read_text()
        assert client.validate_config(label_studio.url, label_studio.token, xml) is None, name
    broken = "<View><Text name='text' value='$text'/><Choices name='policy' toName='nowhere'/></View>"
    assert client.validate_config(label_studio.url, label_studio.token, broken)


def test_configs_check_cli_against_a_running_label_studio(label_studio):
    env = os.environ | {"SMO_LS_URL": label_studio.url, "SMO_LS_TOKEN": label_studio.token}
    result = subprocess.run([SMO, "configs", "check"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Label Studio accepts every config" in result.stdout
    down = subprocess.run(
        [SMO, "configs", "check"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env | {"SMO_LS_URL": "http://127.0.0.1:9"},
    )
    assert down.returncode == 1 and "not answering" in down.stderr and "Traceback" not in down.stderr


def _smo_in_copy(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the `smo` CLI from a copy of the package, so it works on that copy's files."""
    return subprocess.run(
        [sys.executable, "-m", "smo_labelstudio.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PYTHONPATH": str(root)},
    )


def test_cli_build_and_check_on_an_edited_taxonomy(project_copy):
    shutil.copytree(
        REPO_ROOT / "smo_labelstudio", project_copy / "smo_labelstudio", ignore=shutil.ignore_patterns("__pycache__")
    )
    tax_file = project_copy / "taxonomy.yaml"
    tax_file.write_text(
        tax_file.read_text().replace(
            "Targeted abuse of an identifiable person", "Targeted, repeated abuse of an identifiable person"
        )
    )
    stale = _smo_in_copy(project_copy, "configs", "check", "--offline")
    assert stale.returncode == 1 and "run `smo configs build`" in stale.stderr

    built = _smo_in_copy(project_copy, "configs", "build")
    assert built.returncode == 0, built.stderr
    assert (
        "wrote label_configs/text_moderation.xml" in built.stdout and "wrote guidelines/harassment.md" in built.stdout
    )
    assert _smo_in_copy(project_copy, "configs", "check", "--offline").returncode == 0

    (project_copy / "guidelines" / "harassment.md").unlink()
    missing = _smo_in_copy(project_copy, "configs", "check", "--offline")
    assert missing.returncode == 1
    assert "label 'harassment' has no guideline section (guidelines/harassment.md)" in missing.stderr
    assert "Traceback" not in missing.stderr
