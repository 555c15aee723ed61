"""The vertical slice against a real Label Studio: project from a committed config, import, read back."""

from __future__ import annotations

import httpx
import pytest

from smo_labelstudio.core.paths import LABEL_CONFIGS_DIR
from smo_labelstudio.labelstudio import client

CONFIGS = sorted(LABEL_CONFIGS_DIR.glob("*.xml"))


def test_there_are_label_configs():
    assert CONFIGS, "label_configs/ holds no config"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_project_from_config_import_and_read_back(ls_client, config, unique):
    project_id = client.create_project(ls_client, f"slice {config.stem} {unique}", config.read_text())
    tasks = [
        {
            "data": {
                "external_id": f"{unique}-{i}",
                "text": f"item {i}",
                "language": "en",
                "image": f"/static/images/item-{i}.png",
            }
        }
        for i in range(25)
    ]
    assert client.import_tasks(ls_client, project_id, tasks) == 25
    back = client.list_tasks(ls_client, project_id)
    assert sorted(t["data"]["external_id"] for t in back) == sorted(t["data"]["external_id"] for t in tasks)
    assert client.find_project(ls_client, f"slice {config.stem} {unique}") == project_id


def test_label_studio_refuses_a_broken_config(ls_client, unique):
    with pytest.raises(Exception) as err:
        client.create_project(ls_client, f"broken {unique}", "<View><Choices name='x' toName='nope'/></View>")
    assert "400" in str(err.value) or "label_config" in str(err.value).lower()


def test_legacy_token_works_and_a_wrong_one_is_refused(label_studio):
    ok = httpx.get(f"{label_studio.url}/api/projects", headers=label_studio.headers)
    bad = httpx.get(f"{label_studio.url}/api/projects", headers={"Authorization": "Token " + "0" * 40})
    assert ok.status_code == 200
    assert bad.status_code == 401
