"""What annotators see, in a real browser: headless Debian chromium on a real Label Studio.

For an English and an Arabic task with a model prediction, the labeling screen shows the policy
choices, the predicted policy and severity pre-selected, the guidelines, and the text aligned in
its own direction. Screenshots are kept in test-artifacts/ui/ (or $SMO_TEST_ARTIFACTS/ui/).
"""

from __future__ import annotations

import secrets

import pytest
from browser import CHROMIUM, FLAGS, artifacts

from smo_labelstudio.core.taxonomy import load_taxonomy
from smo_labelstudio.labelstudio import client, configs

ARTIFACTS = artifacts("ui")

TASKS = {
    "en": ("Click here to claim your free prize now!!!", "spam_scams", "2"),
    "ar": ("هذا المقال رائع، شكرا لكم وأتمنى لكم يوما سعيدا", "no_violation", "1"),
}

# Where the text line sits inside its container: a right-to-left paragraph hugs the right edge.
GAPS_JS = """() => { const c = document.querySelector('.smo-content .lsf-richtext__container');
  const r = document.createRange(); r.selectNodeContents(c.querySelector('.lsf-richtext__line'));
  const t = r.getBoundingClientRect(), b = c.getBoundingClientRect();
  return {left: t.left - b.left, right: b.right - t.right}; }"""


def _prediction(policy: str, severity: str) -> dict:
    return {
        "model_version": "ui-test",
        "score": 0.91,
        "result": [
            {"from_name": "policy", "to_name": "text", "type": "choices", "value": {"choices": [policy]}},
            {"from_name": "severity", "to_name": "text", "type": "choices", "value": {"choices": [severity]}},
        ],
    }


@pytest.fixture(scope="module")
def ui_project(label_studio):
    ls = client.connect(label_studio.url, label_studio.token)
    ui = configs.labeling_interface("text_moderation")
    pid = client.create_project(ls, f"ui {secrets.token_hex(4)}", ui["label_config"], instructions=ui["instructions"])
    client.import_tasks(
        ls,
        pid,
        [
            {
                "data": {"text": text, "language": lang, "external_id": f"ui-{lang}"},
                "predictions": [_prediction(policy, sev)],
            }
            for lang, (text, policy, sev) in TASKS.items()
        ],
    )
    ids = {t["data"]["language"]: t["id"] for t in client.list_tasks(ls, pid)}
    return pid, ids, ui


@pytest.fixture(scope="module")
def page(label_studio):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(f"{label_studio.url}/user/login/")
        pg.fill("input[name=email]", label_studio.email)
        pg.fill("input[name=password]", label_studio.password)
        pg.click("button[type=submit]")
        pg.wait_for_url(lambda url: "/user/login" not in url)
        yield pg
        browser.close()


@pytest.mark.parametrize("lang", list(TASKS))
def test_labeling_screen_shows_choices_prediction_and_guidelines(page, label_studio, ui_project, lang):
    pid, ids, ui = ui_project
    text, policy, severity = TASKS[lang]
    tax = load_taxonomy()
    titles = {p.id: p.title for p in tax.policies}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{label_studio.url}/projects/{pid}/data?tab=0&task={ids[lang]}")
    page.wait_for_selector(".smo-content .lsf-richtext__line")
    page.wait_for_selector(f'input[name="{titles[policy]}"]:checked')  # the prediction, pre-selected
    page.screenshot(path=str(ARTIFACTS / f"labeling-{lang}.png"), full_page=True)

    assert page.locator(".smo-content .lsf-richtext__line").inner_text().strip() == text
    assert page.get_by_text(f"Language: {lang}").count() >= 1
    for title in titles.values():  # every policy of the taxonomy is a choice
        assert page.locator(f'.lsf-choices input[name="{title}"]').count() == 1, title
    checked = page.locator(".lsf-choices input:checked").evaluate_all("els => els.map(e => e.name)")
    level = next(s for s in tax.severity if str(s.level) == severity)
    assert sorted(checked) == sorted([titles[policy], f"{level.level} - {level.name}"])

    gaps = page.evaluate(GAPS_JS)
    if lang in tax.rtl_languages:
        assert gaps["right"] < 5 < gaps["left"], gaps  # right-aligned, right-to-left
    else:
        assert gaps["left"] < 20 < gaps["right"], gaps

    # The guidelines, with their version, from the labeling screen's Instructions button.
    page.get_by_role("button", name="Instructions").click()
    dialog = page.get_by_text(f"Guidelines version {ui['guidelines_version']}")
    dialog.wait_for()
    assert page.get_by_text(tax.policies[0].definition).count() >= 1
    page.screenshot(path=str(ARTIFACTS / f"guidelines-{lang}.png"))
    page.keyboard.press("Escape")


def test_the_guidelines_open_by_themselves_when_an_annotator_starts_labeling(page, label_studio, ui_project):
    """The project's `show_instruction`: the labeling stream ("Label All Tasks") opens with the
    guidelines in front of the annotator, before any click."""
    pid, _ids, ui = ui_project
    page.goto(f"{label_studio.url}/projects/{pid}/data?labeling=1")
    page.get_by_text(f"Guidelines version {ui['guidelines_version']}").wait_for(timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "guidelines-on-start.png"))
    # readable: headings get line height (the dialog's own left a wrapped title overlapping itself)
    ratios = page.locator(".smo-guidelines h1, .smo-guidelines h2").evaluate_all(
        "els => els.map(e => { const s = getComputedStyle(e); "
        "return parseFloat(s.lineHeight) / parseFloat(s.fontSize); })"
    )
    assert ratios and min(ratios) >= 1.2, ratios
    page.keyboard.press("Escape")
