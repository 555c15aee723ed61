"""The docs site: a short README, a strict mkdocs build, reference pages generated from the code, and every
section the README used to hold kept as a page heading of the site."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

# Every `##` and `###` heading of the README before the docs site (`git show 09de39f:README.md`).
OLD_README_HEADINGS = [
    "The two commands",
    "Three environments",
    "The local stack: `smo stack`",
    "Pre-annotation ML backend: `smo backend`",
    "What annotators see: taxonomy, label configs, guidelines",
    "Project spec",
    "Labeling batches: `smo launch`, `smo pull`, `smo serve`",
    "Operations report and model evaluation: `smo report`",
    "Export: `smo export`",
    "Analyst access: `smo sql`, `smo warehouse sync`",
    "Analyst queries",
    "Other commands",
    "Quality: `smo quality`",
    "Layout",
    "Tests",
    "Faults, retries and secrets",
    "Production deployment",
    "One machine: `smo serve`",
    "Many machines: `docker-compose.yml`, `prefect.yaml` and a work pool",
    "Scale-out: the quality engine on Dask",
    "Licence",
]
# Old sections that became more than one heading on purpose: old heading -> (page, its headings) holding it.
SPLIT = {
    "Faults, retries and secrets": [
        ("operations/faults.md", "Retries and timeouts"),  # its bold "Retries and timeouts" paragraph
        ("operations/faults.md", "What a re-run does after a fault"),  # its bold re-run paragraph
        ("operations/secrets.md", "Secrets"),  # its bold "Secrets." paragraph, a page of its own
    ],
}


def load_hooks() -> ModuleType:
    """docs/hooks.py (not a package module: mkdocs loads it by path, and so do we)."""
    spec = importlib.util.spec_from_file_location("smo_docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def headings(path: Path) -> set[str]:
    """The text of every Markdown heading of a page, outside fenced code blocks."""
    found, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#{1,6} (.+?)\s*$", line)):
            found.add(match.group(1))
    return found


def test_the_readme_is_at_most_10_kb_and_keeps_the_two_commands():
    readme = (REPO / "README.md").read_bytes()
    assert len(readme) <= 10240, f"README.md is {len(readme)} bytes"
    text = readme.decode()
    assert re.search(r"^make demo ", text, re.M) and re.search(r"^make test ", text, re.M)


def test_every_section_the_readme_lost_is_a_heading_of_the_docs_site():
    pages = {p.relative_to(DOCS).as_posix(): headings(p) for p in DOCS.rglob("*.md")}
    every = set().union(*pages.values())
    for old in OLD_README_HEADINGS:
        if old in SPLIT:
            for page, heading in SPLIT[old]:
                assert heading in pages.get(page, set()), f"{old!r}: {heading!r} missing from docs/{page}"
        else:
            assert old in every, f"the README's section {old!r} is not a heading anywhere in docs/"


def test_the_analyst_queries_moved_with_their_sql():
    text = (DOCS / "guides" / "analyst.md").read_text()
    section = text.split("\n## Analyst queries\n", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"\*\*\d+\. .+?\*\*\s*```sql\n", section)) == 9


def test_generated_pages_are_not_committed():
    for page in ("reference/cli.md", "reference/spec.md", "reference/taxonomy.md", "reference/settings.md"):
        assert not (DOCS / page).exists(), f"docs/{page} is generated at build time; delete the file"


def test_the_cli_reference_has_every_command_with_its_options_and_help():
    hooks = load_hooks()
    page = hooks.cli_reference()
    commands = list(hooks.iter_commands())
    names = {" ".join(path) for path, _, _ in commands}
    assert {"smo stack up", "smo launch", "smo quality compute", "smo warehouse sync", "smo sql"} <= names
    for path, cmd, ctx in commands:
        name = " ".join(path)
        assert f"## `{name}`" in page, f"{name} is missing from the CLI reference"
        section = page.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        if cmd.help:
            assert " ".join(cmd.help.split()[:6]) in " ".join(section.split()), f"{name}: help text missing"
        for param in cmd.get_params(ctx):
            for opt in param.opts:
                if opt.startswith("-"):
                    assert f"`{opt}" in section, f"{name}: option {opt} missing"


def test_the_schema_pages_list_every_field_of_spec_and_taxonomy():
    hooks = load_hooks()
    from smo_labelstudio.core.spec import Spec
    from smo_labelstudio.core.taxonomy import Taxonomy

    for page, model in ((hooks.spec_reference(), Spec), (hooks.taxonomy_reference(), Taxonomy)):
        for name, sub in hooks._models(model).items():
            assert f"## `{name}`" in page
            for field in sub.model_fields:
                assert f"| `{field}` |" in page, f"{name}.{field} missing"
    assert "| `min_confidence` | `number` | `0.7` | >= 0, <= 1 | consensus below this goes to adjudication |" in (
        hooks.spec_reference()
    )


def test_the_settings_page_lists_every_variable_when_there_are_settings():
    hooks = load_hooks()
    model = hooks.settings_model()
    if model is None:
        pytest.skip("no smo_labelstudio.core.settings yet")
    page = hooks.settings_reference(model)
    for field in model.model_fields:
        assert f"| `SMO_{field.upper()}` |" in page


def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "smo warehouse sync" in cli and "smo stack up" in cli
    assert (site / "reference" / "spec" / "index.html").exists()
    assert (site / "reference" / "taxonomy" / "index.html").exists()
    assert not (site / "hooks.py").exists()
    assert "smo_labelstudio/core/files.py" in (site / "architecture" / "index.html").read_text()
    assert "fonts.googleapis" not in (site / "index.html").read_text()


def test_a_broken_link_fails_the_strict_build_even_when_quiet(tmp_path):
    """`--quiet` would hide the warnings `--strict` counts; the hook keeps them visible, so a broken anchor fails."""
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    (tmp_path / "smo_labelstudio").symlink_to(REPO / "smo_labelstudio")  # the architecture page's module table
    page = tmp_path / "docs" / "guides" / "annotator.md"
    page.write_text(page.read_text() + "\nSee [nowhere](project-manager.md#no-such-section).\n")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode != 0 and "no-such-section" in run.stderr, run.stdout + run.stderr
