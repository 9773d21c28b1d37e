"""Prompts in a real headless Chromium: create a template, save a second version, diff them, roll back a label."""

import pytest
from browser import NO_WATCHER, browser_page, choose, idle, live, open_page, require_chromium, running_app, screenshot
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    require_chromium()
    data = tmp_path_factory.mktemp("prompts") / "data"
    with running_app({"WORKBENCH_DATA_DIR": str(data), "WORKBENCH_USER": "author"}, args=NO_WATCHER) as url:
        yield url, data


def commit(page, label: str, text: str) -> None:
    """Type into the current text input or text area labelled `label` and send it to the app."""
    box = live(page).get_by_label(label, exact=True)
    box.fill(text)
    box.press("Control+Enter" if box.evaluate("e => e.tagName") == "TEXTAREA" else "Enter")


def test_an_author_creates_a_template_saves_v2_diffs_it_and_rolls_production_back_to_v1(app):
    url, data = app
    with browser_page("prompts") as page:
        open_page(page, url, "Prompts")

        choose(page, "Template", "➕ New template")
        live(page).get_by_role("button", name="Create template").wait_for()
        idle(page)
        commit(page, "Name", "support.reply")
        commit(page, "System message", "You answer customers.")
        commit(page, "User message", "Reply to {{ customer }}.")
        live(page).get_by_text("Variables: customer").wait_for()
        idle(page)
        live(page).get_by_role("button", name="Create template").click()
        live(page).get_by_text("Saved support.reply v1.").wait_for()
        idle(page)
        assert live(page).get_by_role("combobox", name="Template").input_value() == "support.reply"

        commit(page, "User message", "Reply kindly to {{ customer }}.")
        commit(page, "Change note", "kinder")
        idle(page)
        live(page).get_by_role("button", name="Save version").click()
        live(page).get_by_text("Saved support.reply v2.").wait_for()
        idle(page)
        live(page).get_by_text("newest v2 · no labels").wait_for()

        page.get_by_role("tab", name="History & diff").click()
        diff = live(page).locator('[data-testid="stCode"]:visible')
        diff.filter(has_text="- Reply to {{ customer }}.").wait_for()  # v1 on the left
        diff.filter(has_text="+ Reply kindly to {{ customer }}.").wait_for()  # v2 on the right
        screenshot(page, "prompts-diff")

        page.get_by_role("tab", name="Labels").click()
        live(page).get_by_text("production is a new label.").wait_for()
        move = live(page).get_by_role("button", name="Move label")
        assert move.is_disabled()  # nothing moves without the confirmation
        live(page).get_by_text("Yes, make production run v2").click()
        expect(move).to_be_enabled(timeout=60_000)
        idle(page)
        move.click()
        live(page).get_by_text("production now points at v2.").first.wait_for()
        idle(page)
        live(page).get_by_text("newest v2 · production → v2").wait_for()

        page.get_by_role("tab", name="Labels").click()
        choose(page, "Point it at", "v1")
        confirm = live(page).get_by_text("Yes, make production run v1")
        confirm.wait_for()
        idle(page)
        commit(page, "Why (kept in the label history)", "customers preferred v1")
        idle(page)
        assert live(page).get_by_role("button", name="Move label").is_disabled()
        confirm.click()
        expect(move).to_be_enabled(timeout=60_000)
        idle(page)
        move.click()
        live(page).locator('[data-testid="stAlertContentSuccess"]').get_by_text(
            "production now points at v1."
        ).wait_for()
        idle(page)
        live(page).get_by_text("newest v2 · production → v1").wait_for()
        screenshot(page, "prompts-rolled-back")

    from lib.core.db import make_engine
    from lib.prompts.store import TemplateStore

    engine = make_engine(f"sqlite:///{data / 'workbench.db'}")
    try:
        store = TemplateStore(engine)
        assert store.get_by_label("support.reply", "production").version == 1
        assert [(m.from_version, m.to_version, m.note) for m in store.label_history("support.reply")] == [
            (2, 1, "customers preferred v1"),
            (None, 2, ""),
        ]
    finally:
        engine.dispose()
