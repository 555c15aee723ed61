"""`smo configs build` and `smo configs check`: keep taxonomy, label configs and guidelines in step."""

from __future__ import annotations

from pathlib import Path

from smo_labelstudio.core.errors import ConfigError
from smo_labelstudio.core.paths import REPO_ROOT, list_configs
from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.labelstudio.guidelines import (
    GENERATED_NOTE,
    OVERVIEW,
    instructions_html,
    pages_version,
    read_pages,
    render_pages,
)
from smo_labelstudio.labelstudio.label_config import KINDS, config_labels, render_config

# list_configs lives in core.paths (the spec needs it too); callers keep using it from here.
__all__ = ["build", "check", "labeling_interface", "list_configs"]


def _folders(root: Path) -> tuple[Path, Path, Path]:
    return root / "taxonomy.yaml", root / "label_configs", root / "guidelines"


def build(root: Path = REPO_ROOT) -> list[Path]:
    """Regenerate every config and guideline page from the taxonomy; return the files that changed."""
    tax_file, configs_dir, guides_dir = _folders(root)
    tax = load_taxonomy(tax_file)
    wanted: dict[Path, str] = {configs_dir / f"{kind}.xml": render_config(tax, kind) for kind in KINDS}
    wanted |= {guides_dir / name: text for name, text in render_pages(tax).items()}
    changed = []
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    # A policy removed from the taxonomy takes its generated page with it.
    for stale in guides_dir.glob("*.md"):
        if stale not in wanted and stale.read_text(encoding="utf-8").startswith(GENERATED_NOTE):
            stale.unlink()
            changed.append(stale)
    return changed


def check(root: Path = REPO_ROOT, validate=None) -> list[str]:
    """Every problem found, one line each (empty when all agree).

    `validate(xml) -> str | None` checks a config against a running Label Studio when given.
    """
    tax_file, configs_dir, guides_dir = _folders(root)
    tax = load_taxonomy(tax_file)
    problems: list[str] = []
    pages = read_pages(guides_dir)
    guideline_ids = {name.removesuffix(".md") for name in pages if name != f"{OVERVIEW}.md"}
    if f"{OVERVIEW}.md" not in pages:
        problems.append(f"{guides_dir.name}/{OVERVIEW}.md is missing")

    config_files = sorted(configs_dir.glob("*.xml"))
    labelled: set[str] = set()
    for path in config_files:
        rel = f"{configs_dir.name}/{path.name}"
        xml = path.read_text(encoding="utf-8")
        try:
            labels = config_labels(xml)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
            problems.append(f"{rel}: not well-formed XML ({exc})")
            continue
        used = labels.get("policy", set()) | labels.get("spans", set())
        labelled |= used
        for label in sorted(used - guideline_ids):
            problems.append(f"{rel}: label {label!r} has no guideline section ({guides_dir.name}/{label}.md)")
        for label in sorted(used - set(tax.ids)):
            problems.append(f"{rel}: label {label!r} is not in taxonomy.yaml")
        for missing in sorted(set(tax.ids) - labels.get("policy", set())):
            problems.append(f"{rel}: taxonomy policy {missing!r} is missing from the policy choices")
        if path.stem in KINDS and xml != render_config(tax, path.stem):
            problems.append(f"{rel}: differs from what taxonomy.yaml generates; run `smo configs build`")
        if validate is not None:
            refusal = validate(xml)
            if refusal:
                problems.append(f"{rel}: Label Studio refuses it: {refusal}")
    for kind in KINDS:
        if not (configs_dir / f"{kind}.xml").exists():
            problems.append(f"{configs_dir.name}/{kind}.xml is missing; run `smo configs build`")

    for gid in sorted(guideline_ids - set(tax.ids)):
        problems.append(f"{guides_dir.name}/{gid}.md: guideline section has no label in taxonomy.yaml")
    for gid in sorted(guideline_ids & set(tax.ids) - labelled):
        problems.append(f"{guides_dir.name}/{gid}.md: guideline section has no label in any config")
    expected = render_pages(tax)
    for name, text in expected.items():
        if name in pages and pages[name] != text:
            problems.append(
                f"{guides_dir.name}/{name}: differs from what taxonomy.yaml generates; run `smo configs build`"
            )
    return problems


def labeling_interface(name: str, root: Path = REPO_ROOT) -> dict:
    """What a new project is created with: the config, the rendered guidelines and their versions."""
    tax_file, configs_dir, guides_dir = _folders(root)
    path = configs_dir / f"{name}.xml"
    if not path.exists():
        raise ConfigError(f"no label config named {name!r}; `smo configs list` shows: {', '.join(list_configs(root))}")
    tax = load_taxonomy(tax_file)
    pages = read_pages(guides_dir)
    return {
        "config": name,
        "label_config": path.read_text(encoding="utf-8"),
        "instructions": instructions_html(tax, pages),
        "taxonomy_version": tax.version,
        "guidelines_version": pages_version(tax, pages),
    }
