"""The Pipelines and Review pages' view models, without Streamlit."""

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from pipeline_fixtures import DEFINITION, NAME

from lib.pipelines.definition import PipelineError
from lib.pipelines.review import ReviewItem
from lib.pipelines.runs import RunStatus
from lib.ui import pipelines_view as view
from lib.ui import review_view


def test_the_definition_editor_names_the_line_of_bad_json_and_the_step_of_a_bad_reference():
    with pytest.raises(PipelineError, match=r"not JSON: .* line 3, column"):
        view.parse_definition(NAME, '{\n  "steps": [\n    {"kind": "prompt",, }\n  ]\n}')
    bad = json.loads(json.dumps(DEFINITION))
    bad["steps"][0]["condition"] = "reply.text == 'x'"
    with pytest.raises(PipelineError, match=r"Step 1 \('classify'\).*'reply', which runs later"):
        view.parse_definition(NAME, json.dumps(bad))
    assert [s.name for s in view.parse_definition(NAME, json.dumps(DEFINITION)).steps] == ["classify", "check", "reply"]


def test_the_starter_definition_is_a_valid_pipeline_on_the_first_template():
    pipeline = view.parse_definition("starter", view.starter_text(["support.reply"]))
    assert [s.kind for s in pipeline.steps] == ["prompt", "gate"]
    assert pipeline.steps[0].template == "support.reply"


def test_typed_rows_drop_blank_lines_and_an_empty_table_asks_for_a_row():
    frame = pd.DataFrame({"ticket": ["It broke", None, "  "], "customer": ["ann", None, ""]})
    assert view.rows_from_editor(frame) == [{"ticket": "It broke", "customer": "ann"}]
    with pytest.raises(view.NothingToRun, match="Type at least one row"):
        view.rows_from_editor(frame.iloc[1:])


def status(state: str, rows: dict[str, int], budget: float | None = None, waiting: int = 0) -> RunStatus:
    full = {k: rows.get(k, 0) for k in ("pending", "completed", "failed", "review", "rejected")}
    return RunStatus(
        7, NAME, 2, state, sum(full.values()), full, {"classify": {"ok": 3}}, {}, 0.0123, 0, budget, waiting,
        None, "ada", None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "rows", "active", "cancel", "retry", "resume"),
    [
        ("running", {"pending": 2, "completed": 1}, True, True, False, False),
        ("waiting_review", {"completed": 2, "review": 1}, True, True, False, False),
        ("paused_budget", {"pending": 3}, False, True, False, True),
        ("failed", {"completed": 2, "failed": 1}, False, False, True, False),
        ("completed", {"completed": 3}, False, False, False, False),
    ],
)
def test_a_run_panel_offers_the_buttons_its_state_allows(state, rows, active, cancel, retry, resume):
    panel = view.run_panel(status(state, rows, budget=0.05, waiting=rows.get("review", 0)), ["classify", "check"])
    assert (panel.active, panel.cancel, panel.retry, panel.resume) == (active, cancel, retry, resume)
    assert panel.steps[0] == {"step": "classify", "ok": 3, "skipped": 0, "passed": 0, "approved": 0, "edited": 0,
                              "rejected": 0, "failed": 0}  # fmt: skip
    assert "$0.01230" in panel.text and "budget $0.0500" in panel.text


def test_a_paused_run_says_so_and_a_waiting_one_counts_its_rows():
    assert "paused: budget $0.0500 reached" in view.run_panel(status("paused_budget", {"pending": 1}, 0.05), []).text
    text = view.run_panel(status("waiting_review", {"review": 2}, waiting=2), []).text
    assert "waiting for review (2)" in text


def item(created: datetime, schema: dict | None, outputs: dict) -> ReviewItem:
    return ReviewItem(
        1, 7, 4, "check", NAME, 2, "waiting", "classify.confidence < 0.7", "classify", schema, {"ticket": "x"},
        outputs, created, None, None, None, None, None,
    )  # fmt: skip


def test_review_items_read_their_age_and_start_the_edit_from_the_current_output():
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    naive = (now - timedelta(hours=3)).replace(tzinfo=None)  # as SQLite gives it back
    waiting = item(naive, {"type": "object"}, {"classify": {"label": "bug", "confidence": 0.4}})
    assert review_view.item_title(waiting, now) == "Run #7 · row 5 · gate check · waiting 3 h"
    assert json.loads(review_view.edit_start(waiting)) == {"label": "bug", "confidence": 0.4}
    text_step = item(now, None, {"classify": {"text": "Hello"}})
    assert review_view.edit_start(text_step) == "Hello" and review_view.actions(text_step) == [
        "approve",
        "edit",
        "reject",
    ]
    frame = review_view.outputs_frame(item(now, None, {"classify": {"label": "bug"}, "skipped_step": None}))
    assert list(frame["field"]) == ["classify.label", "skipped_step"] and list(frame["value"]) == ["bug", "(skipped)"]


def test_the_templates_line_lists_each_template_with_the_names_it_needs(fresh_engine):
    from pipeline_fixtures import create_templates

    from lib.prompts.store import TemplateStore

    store = TemplateStore(fresh_engine)
    assert "none yet" in view.templates_line(store)
    create_templates(store)
    assert view.templates_line(store) == "Templates: desk.classify (ticket); desk.reply (ticket, classify.label)"
