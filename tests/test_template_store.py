"""Stored templates: versions, labels, rollback, diff, export/import and runs through the gateway."""

import dataclasses
import json

import pytest
import yaml
from langchain_core.language_models import FakeListChatModel
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from lib.core.settings import load_settings
from lib.core.tables import LlmCall, TemplateVersion
from lib.gateway.client import CallContext, Gateway
from lib.prompts.builtin import DEFAULT_SYSTEM_PROMPT
from lib.prompts.language import InvalidTemplate, MissingVariables, Template, TemplateSyntaxError, UnknownVariables
from lib.prompts.runs import chat_system_prompt, load_prompt, run_template
from lib.prompts.store import ImportFailed, TemplateExists, TemplateNotFound, TemplateStore, ensure_builtin_templates

GREETING = Template(
    name="support.greeting",
    description="Greets a customer",
    system="You are kind.",
    user="Greet {{ customer }}.",
    temperature=0.2,
)


def edited(template: Template, **changes) -> Template:
    return dataclasses.replace(template, **changes)


@pytest.fixture
def store(any_engine) -> TemplateStore:
    return TemplateStore(any_engine)


def test_migrations_create_the_template_tables(any_engine):
    tables = set(inspect(any_engine).get_table_names())
    assert {"prompt_templates", "template_versions", "template_labels", "label_moves"} <= tables


def test_every_save_is_a_new_numbered_version_with_author_time_and_note(store):
    v1 = store.create(GREETING, "ann")
    v2 = store.save_version(edited(GREETING, user="Greet {{ customer }} warmly."), "bob", "warmer")
    assert (v1.version, v2.version) == (1, 2)
    history = store.history(GREETING.name)
    assert [(v.version, v.author, v.note) for v in history] == [(2, "bob", "warmer"), (1, "ann", "Created")]
    assert history[0].created_at >= history[1].created_at.replace(tzinfo=history[0].created_at.tzinfo)
    assert store.get_version(GREETING.name, 1).template == GREETING


def test_saving_unchanged_content_creates_nothing(store):
    store.create(GREETING, "ann")
    assert store.save_version(GREETING, "bob", "no change") is None
    assert [v.version for v in store.history(GREETING.name)] == [1]


def test_a_parameter_change_alone_is_a_new_version(store):
    store.create(GREETING, "ann")
    assert store.save_version(edited(GREETING, temperature=0.9), "ann", "hotter").version == 2


def test_stored_versions_cannot_be_changed(store, any_engine):
    store.create(GREETING, "ann")
    with Session(any_engine) as s:
        row = s.scalar(select(TemplateVersion))
        row.note = "rewritten history"
        with pytest.raises(ValueError, match="immutable"):
            s.commit()


def test_unsafe_templates_are_refused_at_save_time_and_nothing_is_stored(store):
    store.create(GREETING, "ann")
    with pytest.raises(TemplateSyntaxError, match="__class__"):
        store.save_version(edited(GREETING, user="{{ customer.__class__ }}"), "eve")
    assert len(store.history(GREETING.name)) == 1


def test_creating_a_name_twice_is_refused(store):
    store.create(GREETING, "ann")
    with pytest.raises(TemplateExists, match="already exists"):
        store.create(GREETING, "bob")


def test_labels_deploy_and_roll_back_and_every_move_is_kept(store):
    store.create(GREETING, "ann", labels=("production",))
    store.save_version(edited(GREETING, system="You are brisk."), "bob", "brisk")
    assert store.move_label(GREETING.name, "production", 2, "bob", "ship it")
    assert store.get_by_label(GREETING.name, "production").template.system == "You are brisk."
    assert store.move_label(GREETING.name, "production", 1, "ann", "customers complained")
    assert store.get_by_label(GREETING.name, "production").version == 1
    moves = [(m.label, m.from_version, m.to_version, m.moved_by, m.note) for m in store.label_history(GREETING.name)]
    assert moves == [
        ("production", 2, 1, "ann", "customers complained"),
        ("production", 1, 2, "bob", "ship it"),
        ("production", None, 1, "ann", "created with the template"),
    ]


def test_authors_can_add_their_own_labels_and_moving_to_the_same_version_records_nothing(store):
    store.create(GREETING, "ann")
    assert store.move_label(GREETING.name, "canary-eu", 1, "ann")
    assert not store.move_label(GREETING.name, "canary-eu", 1, "ann")
    assert store.labels(GREETING.name) == {"canary-eu": 1}
    assert len(store.label_history(GREETING.name)) == 1


def test_a_label_cannot_point_at_a_version_that_does_not_exist_or_have_a_bad_name(store):
    store.create(GREETING, "ann")
    with pytest.raises(TemplateNotFound, match="no version 7"):
        store.move_label(GREETING.name, "production", 7, "ann")
    with pytest.raises(InvalidTemplate, match="must be lowercase"):
        store.move_label(GREETING.name, "Prod uction", 1, "ann")
    with pytest.raises(TemplateNotFound, match="no label 'staging'"):
        store.get_by_label(GREETING.name, "staging")


def test_the_diff_of_two_stored_versions_shows_message_and_parameter_changes(store):
    store.create(GREETING, "ann")
    store.save_version(edited(GREETING, user="Greet {{ customer }} by name.", temperature=0.5), "bob")
    system, user, params = store.diff(GREETING.name, 1, 2)
    assert not system.changed
    assert [(r.left, r.right) for r in user.rows] == [("Greet {{ customer }}.", "Greet {{ customer }} by name.")]
    assert [r.right for r in params.rows if r.kind == "changed"] == ["temperature: 0.5"]


def test_the_builtin_prompts_are_shipped_as_v1_labelled_production_once(any_engine):
    assert ensure_builtin_templates(any_engine) == ["chat.system", "rag.answer"]
    assert ensure_builtin_templates(any_engine) == []
    store = TemplateStore(any_engine)
    chat = store.get_by_label("chat.system", "production")
    assert (chat.version, chat.template.system) == (1, DEFAULT_SYSTEM_PROMPT)
    rag = store.get_by_label("rag.answer", "production").template
    assert rag.user == "Context:\n{{ context }}\n\nQuestion: {{ question }}"
    assert "[1]" in rag.system and "I don't know" in rag.system and "not instructions" in rag.system


def test_a_builtin_prompt_must_keep_the_variables_the_app_fills_in(any_engine):
    ensure_builtin_templates(any_engine)
    store = TemplateStore(any_engine)
    rag = store.latest("rag.answer").template
    with pytest.raises(MissingVariables, match="question"):
        store.save_version(edited(rag, user="Context:\n{{ context }}"), "ann")
    with pytest.raises(UnknownVariables, match="tone"):
        store.save_version(edited(rag, system=rag.system + " Be {{ tone }}."), "ann")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_an_export_round_trips_into_an_empty_database_with_versions_and_labels(store, fresh_engine, fmt):
    store.create(GREETING, "ann", labels=("production",))
    store.save_version(
        edited(GREETING, json_schema={"type": "object"}, user="Line 1\nLine {{ customer }}"), "bob", "json"
    )
    store.move_label(GREETING.name, "staging", 2, "bob")
    target = TemplateStore(fresh_engine)
    report = target.import_text(store.export(GREETING.name, fmt), "carol")
    assert report.created and report.added == [(1, 1), (2, 2)]
    assert target.labels(GREETING.name) == {"production": 1, "staging": 2}
    assert [(v.version, v.author, v.note, v.template) for v in target.history(GREETING.name)] == [
        (v.version, v.author, v.note, v.template) for v in store.history(GREETING.name)
    ]


def test_yaml_exports_keep_multiline_messages_readable_for_git(store):
    store.create(edited(GREETING, system="Line one.\nLine two."), "ann")
    text = store.export(GREETING.name, "yaml")
    assert "system: |-\n    Line one.\n    Line two." in text
    assert yaml.safe_load(text)["versions"][0]["system"] == "Line one.\nLine two."


def test_an_import_never_overwrites_existing_versions_or_moves_labels(store):
    store.create(GREETING, "ann", labels=("production",))
    exported = json.loads(store.export(GREETING.name, "json"))
    exported["versions"][0]["user"] = "Someone else's v1 for {{ customer }}."
    report = store.import_text(json.dumps(exported), "carol")
    assert not report.created and report.added == [(1, 2)]
    assert store.get_version(GREETING.name, 1).template == GREETING
    assert store.get_version(GREETING.name, 2).template.user == "Someone else's v1 for {{ customer }}."
    assert store.labels(GREETING.name) == {"production": 1}
    assert store.import_text(json.dumps(exported), "carol").added == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: [unclosed", "neither valid YAML nor JSON"),
        ("{}", "not a template export"),
        (
            json.dumps(
                {
                    "format": "ai-workbench/prompt-template@1",
                    "name": "x",
                    "labels": {},
                    "versions": [{"version": 1, "user": "{{ config.items() }}"}],
                }
            ),
            "Version 1 in the file",
        ),
        (
            json.dumps(
                {
                    "format": "ai-workbench/prompt-template@1",
                    "name": "x",
                    "labels": {"production": 3},
                    "versions": [{"version": 1, "user": "hi"}],
                }
            ),
            "Labels must point",
        ),
        (
            json.dumps(
                {
                    "format": "ai-workbench/prompt-template@1",
                    "name": "x",
                    "labels": {},
                    "versions": [{"version": 1, "user": "hi", "python": "os.system"}],
                }
            ),
            "unknown fields: python",
        ),
        (
            json.dumps(
                {
                    "format": "ai-workbench/prompt-template@1",
                    "name": "x",
                    "versions": [{"version": 2**31, "user": "hi"}],
                }
            ),
            "from 1 to 2147483647",
        ),
        (
            json.dumps(
                {
                    "format": "ai-workbench/prompt-template@1",
                    "name": "x",
                    "labels": {"production": True},
                    "versions": [{"version": 1, "user": "hi"}],
                }
            ),
            "Labels must point",
        ),
    ],
)
def test_a_bad_import_is_refused_with_a_reason_and_changes_nothing(store, text, message):
    with pytest.raises(ImportFailed, match=message):
        store.import_text(text, "eve")
    assert store.names() == []


# ---- running templates through the real gateway, with a fake model ---------------------------------------


def make_gateway(engine, answers: list[str]) -> Gateway:
    settings = load_settings(
        env={"WORKBENCH_PROVIDERS": json.dumps({"fake": {"base_url": "http://127.0.0.1:9/v1", "models": ["model"]}})}
    )
    return Gateway(
        settings, engine, model_factory=lambda *_: FakeListChatModel(responses=answers), sleep=lambda _s: None
    )


def logged(engine) -> list[LlmCall]:
    with Session(engine) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


SENTIMENT = Template(
    name="sentiment",
    user="Classify: {{ text }}",
    json_schema={"type": "object", "required": ["label"], "properties": {"label": {"enum": ["pos", "neg"]}}},
)


def test_every_call_from_a_template_records_its_name_and_version(fresh_engine):
    gateway = make_gateway(fresh_engine, ["Hello Ann!"])
    run = run_template(gateway, GREETING, {"customer": "Ann"}, CallContext(feature="prompts"), version=3)
    assert run.result.text == "Hello Ann!"
    [row] = logged(fresh_engine)
    assert (row.template_name, row.template_version, row.status) == ("support.greeting", 3, "ok")
    assert "Greet Ann." in row.prompt


def test_a_draft_run_is_logged_without_a_version_and_marked_as_a_draft(fresh_engine):
    run_template(make_gateway(fresh_engine, ["hi"]), GREETING, {"customer": "Ann"}, CallContext())
    [row] = logged(fresh_engine)
    assert (row.template_name, row.template_version, row.meta["draft"]) == ("support.greeting", None, True)


def test_valid_structured_output_is_parsed(fresh_engine):
    run = run_template(
        make_gateway(fresh_engine, ['{"label": "pos"}']), SENTIMENT, {"text": "great"}, CallContext(), version=1
    )
    assert run.valid and run.data == {"label": "pos"}
    assert [r.status for r in logged(fresh_engine)] == ["ok"]


def test_an_invalid_answer_is_retried_once_with_the_validation_error(fresh_engine):
    run = run_template(
        make_gateway(fresh_engine, ['{"label": "meh"}', '{"label": "neg"}']),
        SENTIMENT,
        {"text": "bad"},
        CallContext(),
        version=1,
    )
    assert run.valid and run.data == {"label": "neg"} and len(run.calls) == 2
    first, second = logged(fresh_engine)
    assert (first.status, first.error_type, second.status) == ("invalid", "invalid_output", "ok")
    assert "'meh' is not one of" in second.prompt
    assert second.meta["retry_of"] == first.request_id


def test_an_answer_still_invalid_after_the_retry_is_reported_and_logged_as_invalid(fresh_engine):
    run = run_template(
        make_gateway(fresh_engine, ["no json", "still no json"]), SENTIMENT, {"text": "x"}, CallContext(), version=2
    )
    assert not run.valid and "not JSON" in run.problem
    rows = logged(fresh_engine)
    assert [(r.status, r.template_version) for r in rows] == [("invalid", 2), ("invalid", 2)]
    assert all(r.prompt_tokens > 0 for r in rows)  # an invalid answer is still a billed call


def test_chat_uses_whatever_version_production_points_at(fresh_engine):
    ensure_builtin_templates(fresh_engine)
    store = TemplateStore(fresh_engine)
    assert chat_system_prompt(store)[0] == DEFAULT_SYSTEM_PROMPT
    v2 = store.save_version(edited(store.latest("chat.system").template, system="Answer in French."), "ann")
    assert chat_system_prompt(store)[1].version == 1  # saving does not deploy
    store.move_label("chat.system", "production", v2.version, "ann")
    text, version = chat_system_prompt(store)
    assert (text, version.version) == ("Answer in French.", 2)
    assert load_prompt(store, "chat.system").version == 2


def test_a_template_row_without_versions_is_reported_as_not_found_not_a_crash(store, any_engine):
    from lib.core.tables import PromptTemplate

    with Session(any_engine) as s, s.begin():  # a row written by hand or another tool, with no version yet
        s.add(PromptTemplate(name="half.made", description=""))
    with pytest.raises(TemplateNotFound, match=r"half\.made has no versions"):
        store.latest("half.made")


def test_a_template_with_more_than_fifty_variables_is_refused_at_save_and_import_with_the_limit(store):
    from lib.prompts.language import MAX_VARIABLES, TooManyVariables

    many = " ".join(f"{{{{ v{i} }}}}" for i in range(10_000))
    with pytest.raises(TooManyVariables, match="10,000 variables; a template may use at most 50"):
        store.create(edited(GREETING, user=many), "ann")
    fifty = " ".join(f"{{{{ v{i} }}}}" for i in range(MAX_VARIABLES))
    store.create(edited(GREETING, user=fifty), "ann")  # the limit itself is allowed
    exported = json.loads(store.export(GREETING.name, "json"))
    exported["versions"][0]["user"] = many
    with pytest.raises(ImportFailed, match=r"Version 1 .* at most 50"):
        store.import_text(json.dumps(exported), "carol")
