"""The CLI's one error path: a problem the user can fix is one line and exit 1; a bug is its traceback,
where to report it, and exit 2 (never disguised as a user mistake)."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from smo_labelstudio.cli import app
from smo_labelstudio.cli import configs as configs_cli
from smo_labelstudio.cli._errors import REPORT_TO
from smo_labelstudio.core.errors import ConfigError, InputError


def _raise(exc: BaseException):
    def boom(*_args, **_kwargs):
        raise exc

    return boom


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), RuntimeError("oops"), ValueError("a bug")])
def test_a_bug_prints_its_traceback_and_where_to_report_it(monkeypatch, exc):
    monkeypatch.setattr(configs_cli.configs, "list_configs", _raise(exc))
    result = CliRunner().invoke(app, ["configs", "list"])
    assert result.exit_code == 2, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert f"{type(exc).__name__}: {exc}" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "bug" in last and "report it" in last and REPORT_TO in last
    assert result.stdout == ""


@pytest.mark.parametrize("exc", [ConfigError("taxonomy.yaml: bad\n  indent"), InputError("items.csv: no such file")])
def test_an_smo_error_is_one_line(monkeypatch, exc):
    monkeypatch.setattr(configs_cli.configs, "list_configs", _raise(exc))
    result = CliRunner().invoke(app, ["configs", "list"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {' '.join(str(exc).split())}"]
    assert "Traceback" not in result.stderr


def test_label_studio_not_answering_is_one_line(monkeypatch):
    request = httpx.Request("GET", "http://127.0.0.1:8080/api/projects/")
    monkeypatch.setattr(configs_cli.configs, "list_configs", _raise(httpx.ConnectError("refused", request=request)))
    result = CliRunner().invoke(app, ["configs", "list"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: cannot reach 127.0.0.1:8080; is the stack up? (`smo stack status`)"
    ]
