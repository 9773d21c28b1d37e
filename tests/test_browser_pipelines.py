"""Pipelines in a real headless Chromium: build a two-step pipeline with a gate, run 20 rows against a loopback
provider, approve the one gated row with an edit on the Review page, and see the run complete."""

import csv
import io
import json
import secrets
from pathlib import Path

import pytest
from browser import NO_WATCHER, browser_page, choose, idle, live, open_page, require_chromium, running_app, screenshot
from fake_openai import FakeOpenAI
from pipeline_fixtures import DEFINITION, NAME, answer, create_templates, csv_bytes, tickets
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import select
from sqlalchemy.orm import Session

from lib.core.db import make_engine, migrate
from lib.core.tables import LlmCall
from lib.gateway.pricing import set_price_override
from lib.pipelines.runs import list_runs, results
from lib.prompts.store import TemplateStore

pytestmark = pytest.mark.browser

GATED = 7  # the one urgent ticket: the model is unsure about it, so the gate holds it


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    require_chromium()
    data = tmp_path_factory.mktemp("pipelines") / "data"
    engine = make_engine(f"sqlite:///{data / 'workbench.db'}")
    migrate(engine)
    create_templates(TemplateStore(engine))
    set_price_override(engine, "acme/m1", 1000.0, 2000.0, user="ada")  # priced, so costs are not $0
    with FakeOpenAI() as server:
        server.responder = answer
        providers = {"acme": {"base_url": server.base_url, "api_key": "test-" + secrets.token_hex(8), "models": ["m1"]}}
        env = {
            "WORKBENCH_DATA_DIR": str(data),
            "WORKBENCH_USER": "author",
            "WORKBENCH_PROVIDERS": json.dumps(providers),
        }
        with running_app(env, args=NO_WATCHER) as url:
            yield url, engine, server
    engine.dispose()


def commit(page, label: str, text: str) -> None:
    """Type into the current text input or text area labelled `label` and send it to the app."""
    box = live(page).get_by_label(label, exact=True)
    box.fill(text)
    box.press("Control+Enter" if box.evaluate("e => e.tagName") == "TEXTAREA" else "Enter")
    idle(page)


def test_an_author_builds_runs_twenty_rows_a_reviewer_edits_the_gated_one_and_the_run_completes(app):
    url, engine, server = app
    with browser_page("pipelines") as page:
        open_page(page, url, "Pipelines")
        commit(page, "New pipeline name", NAME)
        commit(page, "Definition", json.dumps(DEFINITION, indent=2))
        live(page).get_by_role("button", name="Save as a new version").click()
        live(page).get_by_text(f"Saved {NAME} v1.").wait_for()
        idle(page)
        assert live(page).get_by_role("combobox", name="Pipeline").input_value() == NAME

        page.get_by_role("tab", name="Try and run").click()
        idle(page)  # the tab is remembered with a rerun: upload once it has redrawn the file input
        live(page).get_by_text("Choose a .csv or .jsonl file").wait_for()
        rows = tickets(20, urgent=(GATED,))
        upload = [{"name": "tickets.csv", "mimeType": "text/csv", "buffer": csv_bytes(rows)}]
        for attempt in range(3):  # under load an upload can land in a file input a rerun replaces: choose it again
            live(page).locator('input[type="file"]').set_input_files(files=upload)
            try:
                live(page).get_by_text("20 row(s).").wait_for(timeout=30_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
                idle(page)
        idle(page)
        live(page).get_by_role("button", name="Start the run").click()
        live(page).get_by_text("Run #1 started.").wait_for()  # and its tab opens
        idle(page)
        live(page).get_by_text("waiting for review (1)").first.wait_for(timeout=120_000)  # polled, no reload
        screenshot(page, "pipelines-waiting")
        calls_before = len(server.requests)

        open_page(page, url, "Review")
        live(page).get_by_text("1 row(s) waiting for review.").wait_for()
        live(page).get_by_text("Edit the output, then approve").click()
        live(page).get_by_label("Output of classify").wait_for()
        idle(page)
        commit(page, "Output of classify", '{"label": "billing", "confidence": 1}')
        live(page).get_by_role("button", name="Record the decision").click()
        live(page).get_by_text("edited by author; the row continues from the gate").wait_for()
        idle(page)
        screenshot(page, "review-decided")

        open_page(page, url, "Pipelines")
        choose(page, "Pipeline", NAME)
        idle(page)
        page.get_by_role("tab", name="Runs and results").click()
        idle(page)
        live(page).get_by_text("completed · 20/20 rows done (20 completed)").first.wait_for(timeout=120_000)
        screenshot(page, "pipelines-completed")
        idle(page)  # the panel redraws the whole page once the run stops moving: click after that rerun
        with page.expect_download() as download:
            live(page).get_by_role("button", name="Export CSV").click()
        exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))

    [run] = list_runs(engine, NAME)
    assert (run.state, run.rows["completed"], run.cost_usd > 0) == ("completed", 20, True)
    gated = results(engine, run.id, [GATED])[0]
    assert gated.values["classify.label"] == "billing"
    assert gated.decisions["check"]["decision"] == "edited" and gated.decisions["check"]["decided_by"] == "author"
    assert gated.outputs["reply"] == {"text": "Thanks, we are on it (billing)."}  # the step after the gate saw the edit
    assert [r["status"] for r in exported] == ["completed"] * 20
    assert (exported[GATED]["classify.label"], exported[GATED]["check.decided_by"]) == ("billing", "author")
    assert len(server.requests) == calls_before + 1  # only the gated row's last step ran after the decision
    with Session(engine) as s:
        steps = [c.step for c in s.scalars(select(LlmCall).where(LlmCall.run_id == str(run.id)))]
    assert sorted(steps) == ["classify"] * 20 + ["reply"] * 20  # no step of any row ran twice
