"""mkdocs hooks: the reference pages generated at build time from the code, so they cannot drift from it.

The CLI reference is walked from the Typer app, the spec and taxonomy schemas come from their pydantic models,
the settings table from the settings model when there is one, and the architecture page's module table from the
modules' own docstrings. Nothing generated is written to disk: the pages are virtual files of the build.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `mkdocs build` from anywhere imports the package of this checkout
    sys.path.insert(0, str(REPO))

from smo_labelstudio.core.paths import REPO_ROOT  # noqa: E402 - after the checkout is on sys.path

CLI_PAGE = "reference/cli.md"
SPEC_PAGE = "reference/spec.md"
TAXONOMY_PAGE = "reference/taxonomy.md"
SETTINGS_PAGE = "reference/settings.md"
SETTINGS_MODULE = "smo_labelstudio.core.settings"
MODULES_MARKER = "<!-- generated: modules -->"
GENERATED_NOTE = "<!-- Generated at build time by docs/hooks.py; edit the code, not this page. -->\n\n"


# ---------------------------------------------------------------- CLI reference


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell: one line, pipes escaped outside code spans (inside one a pipe is
    literal to Python-Markdown's tables, and an escape would show)."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(part if part.startswith("`") else part.replace("|", "\\|") for part in parts)


def iter_commands(app: typer.Typer | None = None) -> Iterator[tuple[list[str], Any, Any]]:
    """Every command of the Typer app, depth first: (path of names from `smo`, click command, its context)."""
    if app is None:
        from smo_labelstudio.cli import app as smo  # noqa: PLC0415 - the whole package: only when building

        app = smo
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="smo")

    def walk(cmd: Any, ctx: Any, path: list[str]) -> Iterator[tuple[list[str], Any, Any]]:
        yield path, cmd, ctx
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is None or sub.hidden:
                    continue
                yield from walk(sub, sub.context_class(sub, info_name=name, parent=ctx), [*path, name])

    yield from walk(root, ctx, ["smo"])


def cli_reference(app: typer.Typer | None = None) -> str:
    """The CLI reference as Markdown: every command and subcommand with its usage, help, arguments and options."""
    lines = [
        "# CLI reference",
        "",
        GENERATED_NOTE.strip(),
        "",
        "Every command of `smo`, generated from the Typer app (`smo_labelstudio.cli:app`) when the site is built; "
        "`smo <command> --help` prints the same. The guides say when to use each one.",
        "",
    ]
    for path, cmd, ctx in iter_commands(app):
        name = " ".join(path)
        lines += [f"## `{name}`", ""]
        help_text = (cmd.help or "").replace("\b\n", "").strip()
        if help_text:
            lines += [help_text, ""]
        usage = cmd.get_usage(ctx).strip()
        lines += ["```text", usage, "```", ""]
        rows = []
        for param in cmd.get_params(ctx):
            if param.hidden if hasattr(param, "hidden") else False:
                continue
            record = param.get_help_record(ctx)
            if record is None:  # a plain argument: its metavar is all there is
                record = (param.make_metavar(ctx) if hasattr(param, "make_metavar") else param.name, "")
            opts, help_ = record
            env = param.envvar
            if env and "env var:" not in help_:
                help_ = f"{help_} (environment: `{', '.join(env) if isinstance(env, list | tuple) else env}`)".strip()
            kind = "argument" if type(param).__name__.endswith("Argument") else "option"
            rows.append(f"| {_cell(f'`{opts}`')} | {kind} | {_cell(help_)} |")
        if rows:
            lines += ["| option | kind | what it does |", "|---|---|---|", *rows, ""]
        if hasattr(cmd, "list_commands"):
            subs = [(n, cmd.get_command(ctx, n)) for n in cmd.list_commands(ctx)]
            subs = [(n, s) for n, s in subs if s is not None and not s.hidden]
            if subs:
                lines += ["| command | what it does |", "|---|---|"]
                for n, sub in subs:
                    anchor = "-".join([*path, n])
                    lines.append(f"| [`{' '.join([*path, n])}`](#{anchor}) | {_cell(sub.get_short_help_str(120))} |")
                lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- schema pages from pydantic models


def yaml_comments(path: Path) -> dict[str, str]:
    """Comments of a commented YAML example by dotted key: a `# ...` after the key or on the lines just above it."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    header = True  # the file's opening comment describes the file, not its first key
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped:
            header, above = False, []
            continue
        if stripped.startswith("#"):
            if not header:
                above.append(stripped.lstrip("#").strip())
            continue
        header = False
        match = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*)$", raw)
        if not match:
            above = []
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(k for _, k in stack)
        comment = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        text = " ".join([*above, comment]).strip()
        if text:
            found[dotted] = text
        above = []
    return found


def source_comments(model: type[BaseModel]) -> dict[str, str]:
    """Trailing `# ...` comments on a model's field lines in its source, by field name."""
    try:
        source = Path(sys.modules[model.__module__].__file__ or "").read_text()
    except (KeyError, OSError):
        return {}
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == model.__name__:
            lines = source.splitlines()
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    line = lines[stmt.end_lineno - 1] if stmt.end_lineno else ""
                    if "  # " in line:
                        out[stmt.target.id] = line.split("  # ", 1)[1].strip()
    return out


def _type(prop: dict[str, Any]) -> str:
    """A JSON-schema property's type in a few words: `integer`, `list of string`, `Overlap`, `string or null`."""
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map to {_type(prop['additionalProperties'])}"
    return str(kind)


def _constraints(prop: dict[str, Any]) -> str:
    """Bounds, lengths and patterns of a property (and of its alternatives)."""
    names = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
        "minItems": "items >=",
        "maxItems": "items <=",
        "minLength": "length >=",
        "maxLength": "length <=",
    }
    parts = [f"{label} {prop[key]}" for key, label in names.items() if key in prop]
    if "pattern" in prop:
        parts.append(f"matches `{prop['pattern']}`")
    if "enum" in prop:
        parts.append("one of " + ", ".join(f"`{v}`" for v in prop["enum"]))
    for alt in prop.get("anyOf", []):
        extra = _constraints(alt)
        if extra:
            parts.append(extra)
    return ", ".join(parts)


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The model and every model its fields use, by name, found through the annotations."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ not in found:
                found[tp.__name__] = tp
                for field in tp.model_fields.values():
                    visit(field.annotation)
        for arg in getattr(tp, "__args__", ()) or ():
            visit(arg)

    visit(root)
    return found


def model_reference(
    root: type[BaseModel],
    title: str,
    intro: str,
    example: Path | None = None,
    show_example: bool = True,
    notes: dict[str, str] | None = None,
) -> str:
    """A pydantic model and its nested models as Markdown tables: field, type, default, constraints, description.

    Descriptions come from the field's own `description`, else the comment beside the same key in the commented
    example file, else the comment on its line in the source, else `notes` ("Model.field")."""
    schema = root.model_json_schema()
    defs = {**schema.get("$defs", {}), root.__name__: schema}
    models = _models(root)
    examples = yaml_comments(example) if example else {}
    # dotted path of each model in the example file: the root at "", nested ones under their field name
    prefixes: dict[str, str] = {root.__name__: ""}
    for name in [root.__name__, *[n for n in defs if n != root.__name__]]:
        for field, prop in defs.get(name, {}).get("properties", {}).items():
            refs = [prop.get("$ref", "")] + [p.get("$ref", "") for p in prop.get("anyOf", [])]
            refs += [prop.get("items", {}).get("$ref", "")]
            for ref in filter(None, refs):
                child = ref.rsplit("/", 1)[-1]
                prefixes.setdefault(child, f"{prefixes.get(name, '')}{field}.")
    lines = [f"# {title}", "", GENERATED_NOTE.strip(), "", intro, ""]
    order = [root.__name__, *sorted(n for n in defs if n != root.__name__)]
    for name in order:
        model_schema = defs[name]
        model = models.get(name)
        comments = source_comments(model) if model else {}
        lines += [f"## `{name}`", ""]
        if model_schema.get("description"):
            lines += [" ".join(model_schema["description"].split()), ""]
        if model_schema.get("additionalProperties") is False:
            lines += ["Unknown keys are an error.", ""]
        required = set(model_schema.get("required", []))
        lines += ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
        for field, prop in model_schema.get("properties", {}).items():
            if field in required:
                default = "*required*"
            elif "default" in prop:
                default = f"`{json.dumps(prop['default'])}`"
            else:
                default = "*(the nested model's defaults)*"
            description = (
                prop.get("description")
                or examples.get(f"{prefixes.get(name, '')}{field}")
                or comments.get(field)
                or (notes or {}).get(f"{name}.{field}", "")
            )
            type_ = _type(prop)
            type_cell = f"[`{type_}`](#{type_.lower()})" if type_ in defs else f"`{type_}`"
            lines.append(
                f"| `{field}` | {_cell(type_cell)} | {_cell(default)} | {_cell(_constraints(prop))} | "
                f"{_cell(description)} |"
            )
        lines.append("")
    if example and show_example:
        rel = example.relative_to(REPO_ROOT)
        lines += [f"## Example: `{rel}`", "", "```yaml", example.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def spec_reference() -> str:
    """The project spec's schema page."""
    from smo_labelstudio.core.spec import EXAMPLE_SPEC, Spec  # noqa: PLC0415 - only when building the site

    return model_reference(
        Spec,
        "Project spec schema",
        "The YAML file a project manager writes to start and run a labeling project (`--spec` of most commands; "
        "`smo spec new` writes one with defaults). Generated from the pydantic model "
        "`smo_labelstudio.core.spec.Spec`. A misspelt key or an out-of-range value is an error naming the file and "
        "the field; `guidelines_version` must equal the taxonomy version and `config` must be a name from "
        "`smo configs list`.",
        EXAMPLE_SPEC,
    )


def taxonomy_reference() -> str:
    """The taxonomy's schema page."""
    from smo_labelstudio.core.taxonomy import TAXONOMY_FILE, Taxonomy  # noqa: PLC0415 - only when building the site

    return model_reference(
        Taxonomy,
        "Taxonomy schema",
        f"`{TAXONOMY_FILE.relative_to(REPO_ROOT)}`, the single source of truth for label configs, guidelines, model "
        "labels and exports (see [What annotators see](../guides/annotator.md)). Generated from the pydantic model "
        "`smo_labelstudio.core.taxonomy.Taxonomy`. Policy ids are unique and one of them is `no_violation`; every "
        "severity level a policy describes exists in `severity`. The `changelog` lists every version oldest first "
        "and ends with `version`; each entry names only policy ids the taxonomy has ([Policy changes]"
        "(../guides/project-manager.md#policy-changes-smo-relabel) shows the format and what `smo relabel` does "
        "with it).",
        TAXONOMY_FILE,
        show_example=False,
        notes=TAXONOMY_NOTES,
    )


TAXONOMY_NOTES = {
    "Taxonomy.version": "bumped whenever a definition, label or severity level changes; specs name it as "
    "`guidelines_version`, and the guidelines are stamped with it",
    "Taxonomy.name": "the taxonomy's display name",
    "Taxonomy.languages": "the languages in scope (BCP 47 codes)",
    "Taxonomy.rtl_languages": "languages written right to left: their text is aligned that way in the label configs",
    "Taxonomy.severity": "the severity scale with its rubric (the most severe violation decides an item's level)",
    "Taxonomy.decision_order": "the order in which an annotator makes the decisions, shown in the guidelines",
    "Taxonomy.escalate_when": 'when to tick "Unsure / needs escalation"',
    "Taxonomy.policies": "every policy, each a choice in the label configs and a page of the guidelines",
    "SeverityLevel.level": "the stored value (`1`..`4` in the label configs)",
    "SeverityLevel.name": "its label",
    "SeverityLevel.rubric": "what the level means",
    "Policy.id": "the stored value in labels, pulls, the model and exports",
    "Policy.title": "the label annotators see",
    "Policy.definition": "the definition, shown as the choice's hint",
    "Policy.in_scope": "examples that are this policy",
    "Policy.out_of_scope": "examples that are not",
    "Policy.severity": "what each severity level means for this policy",
    "Policy.languages": "`all`, or the languages the policy applies to",
}


def settings_model() -> type[BaseModel] | None:
    """The settings model, when `smo_labelstudio.core.settings` exists: its one BaseModel subclass defined there."""
    if importlib.util.find_spec(SETTINGS_MODULE) is None:
        return None
    module = importlib.import_module(SETTINGS_MODULE)
    models = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == SETTINGS_MODULE
    ]
    named = [m for m in models if m.__name__ == "Settings"]
    return (named or models)[0] if models else None


def _section_titles(model: type[BaseModel]) -> dict[str, str]:
    """The `# -- title` comment each field of a model's class body sits under, by field name."""
    source = Path(sys.modules[model.__module__].__file__ or "").read_text()
    lines = source.splitlines()
    titles: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == model.__name__:
            current, seen = "", node.lineno
            for stmt in node.body:
                for line in lines[seen : stmt.lineno - 1]:
                    if line.strip().startswith("# -- "):
                        current = line.strip()[5:].strip()
                seen = stmt.end_lineno or stmt.lineno
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    titles[stmt.target.id] = current
    return titles


def _setting_type(prop: dict[str, Any]) -> str:
    """A setting's type in a few words: secrets and paths named as such."""
    if prop.get("writeOnly") or prop.get("format") == "password":
        return "secret"
    if prop.get("format") == "path":
        return "path"
    if "anyOf" in prop:
        kinds = [_setting_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(kinds) if kinds else "null"
    if "enum" in prop:
        return " or ".join(f"`{v}`" for v in prop["enum"])
    return _type(prop)


def settings_reference(model: type[BaseModel]) -> str:
    """Every setting as a table per group: environment variable, type, default, description."""
    config = getattr(model, "model_config", {}) or {}
    prefix = str(config.get("env_prefix", "") or "")
    schema = model.model_json_schema()
    titles = _section_titles(model)
    lines = [
        "# Settings",
        "",
        GENERATED_NOTE.strip(),
        "",
        f"Every environment variable the package reads, generated from `{model.__module__}.{model.__name__}`. "
        + " ".join((model.__doc__ or "").split())
        + " A bad value is one error line naming the variable.",
        "",
    ]
    group = None
    for field, prop in schema.get("properties", {}).items():
        title = titles.get(field, "")
        if title != group:
            group = title
            lines += ["", f"## {title[0].upper() + title[1:]}" if title else "## Other", ""]
            lines += ["| variable | type | default | description |", "|---|---|---|---|"]
        default = f"`{json.dumps(prop['default'])}`" if prop.get("default") is not None else "*(unset)*"
        lines.append(
            f"| `{(prefix + field).upper()}` | {_cell(_setting_type(prop))} | {_cell(default)} | "
            f"{_cell(prop.get('description', ''))} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the architecture page's module table


def module_table() -> str:
    """Every module of the package with the first line of its docstring, grouped by subpackage."""
    root = REPO / "smo_labelstudio"
    lines = ["| module | what it is |", "|---|---|"]
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(REPO).as_posix()
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = doc.strip().split("\n\n", 1)[0]
        lines.append(f"| `{rel}` | {_cell(first)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- mkdocs events


def generated_pages() -> dict[str, str]:
    """The pages this hook adds to the site, by path under docs/."""
    pages = {CLI_PAGE: cli_reference(), SPEC_PAGE: spec_reference(), TAXONOMY_PAGE: taxonomy_reference()}
    model = settings_model()
    if model is not None:
        pages[SETTINGS_PAGE] = settings_reference(model)
    return pages


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Keep warnings visible under `--quiet` (else `--strict` never counts them and a broken link passes), and list
    the settings page under Reference only when there is a settings model to generate it from."""
    log = logging.getLogger("mkdocs")
    if config.strict and log.level > logging.WARNING:
        log.setLevel(logging.WARNING)
    if settings_model() is not None:
        for section in config.nav or []:
            if isinstance(section, dict) and "Reference" in section:
                entries = section["Reference"]
                if not any(isinstance(e, dict) and SETTINGS_PAGE in e.values() for e in entries):
                    entries.insert(3, {"Settings": SETTINGS_PAGE})
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated reference pages as virtual files (never written into docs/)."""
    for src_uri, content in generated_pages().items():
        existing = files.get_file_from_path(src_uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, src_uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill the architecture page's module table from the modules' docstrings."""
    if MODULES_MARKER in markdown:
        markdown = markdown.replace(MODULES_MARKER, module_table())
    return markdown
