"""The Prompts page's form logic, checked without Streamlit."""

from dataclasses import replace
from datetime import UTC, datetime

from lib.prompts.diff import diff_templates
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore, Version
from lib.ui.prompt_form import (
    DEFAULT_MODEL,
    draft_from_form,
    label_caption,
    label_options,
    move_message,
    option_index,
    save_draft,
    schema_text,
    section_heading,
    summary,
    trial_caption,
    trial_version,
    variables_line,
)


def saved(template: Template, version: int = 3) -> Version:
    return Version(template.name, version, template, "ada", "", datetime.now(UTC), "hash")


def test_a_select_box_starts_on_the_current_value_or_else_the_first_option():
    assert option_index(["(default)", "a/m1", "a/m2"], "a/m2") == 2
    assert option_index(["(default)", "a/m1"], "gone/model") == 0
    assert option_index(["a/m1"], None) == 0


def test_the_schema_box_shows_indented_json_or_nothing():
    assert schema_text(Template(name="t")) == ""
    assert schema_text(Template(name="t", json_schema={"type": "object"})) == '{\n  "type": "object"\n}'


def test_the_variables_caption_lists_each_variable_or_says_none():
    assert variables_line(["customer", "order"]) == "Variables: `customer`, `order`"
    assert variables_line([]) == "Variables: none"


def test_try_it_runs_the_saved_version_only_while_the_form_matches_it():
    t = Template(name="t", user="Hi {{ who }}")
    assert trial_version(saved(t), t) == 3
    assert trial_version(saved(t), Template(name="t", user="Hello {{ who }}")) is None
    assert trial_version(None, t) is None
    assert trial_caption(3) == "Trying v3."
    assert trial_caption(None) == "Trying the unsaved draft (logged without a version)."


def test_a_diff_section_heading_says_when_nothing_changed():
    sections = {
        s.title: s
        for s in diff_templates(Template(name="t", system="a", user="u"), Template(name="t", system="b", user="u"))
    }
    headings = {section_heading(s) for s in sections.values()}
    assert any(h.startswith("**") and "no changes" not in h for h in headings)  # the system message changed
    assert any(h.endswith("** · no changes") for h in headings)  # the user message did not


def test_label_lines_say_where_a_label_points_and_whether_it_moved():
    assert label_caption("production", {"production": 2}) == "production now points at v2."
    assert label_caption("canary", {"production": 2}) == "canary is a new label."
    assert move_message("production", 1, True) == "production now points at v1."
    assert move_message("production", 1, False) == "production already pointed at v1."


def test_the_form_describes_a_draft_or_says_why_it_cannot_be_saved():
    draft, found, problem = draft_from_form(
        " support.reply ", "", "", "Reply to {{ customer }}.", DEFAULT_MODEL, 0.7, 256.0, ""
    )
    assert (draft.name, draft.model, draft.max_tokens, found, problem) == (
        "support.reply",
        None,
        256,
        ["customer"],
        None,
    )
    assert summary(draft, 2, {}) == "newest v2 · no labels"  # no dangling separator without a description
    assert (
        summary(replace(draft, description="Support"), 2, {"production": 1}) == "Support · newest v2 · production → v1"
    )
    none, nothing, why = draft_from_form("t", "", "", "{{ a|b }}", DEFAULT_MODEL, None, None, "")
    assert (none, nothing) == (None, []) and why


def test_saving_the_form_creates_the_template_then_saves_versions_only_when_something_changed(fresh_engine):
    store, draft = TemplateStore(fresh_engine), Template(name="support.reply", user="Q: {{ question }}")
    v1, message = save_draft(store, None, draft, "ada", "")
    assert (v1.version, v1.note, message) == (
        1,
        "Created",
        "Saved support.reply v1. Labels did not move: deploy it on the Labels tab.",
    )
    assert save_draft(store, v1, draft, "ada", "again") == (None, "Nothing changed since v1, so no version was saved.")
    v2, _ = save_draft(store, v1, replace(draft, system="Be brief."), "ada", "shorter")
    assert (v2.version, v2.note) == (2, "shorter")


def test_production_and_staging_can_always_be_moved_besides_the_templates_own_labels():
    assert label_options({}) == ["production", "staging"]
    assert label_options({"canary": 2, "production": 1}) == ["canary", "production", "staging"]
