"""The Prompts page under AppTest: create, edit, save a second version, diff, move a label and back."""

import pytest
from shown import shown
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from lib.core.db import make_engine
from lib.core.settings import load_settings
from lib.core.tables import LlmCall
from lib.prompts.language import Template
from lib.prompts.store import TemplateStore

NEW = "➕ New template"


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file("../pages/prompts.py", default_timeout=60)
    at.secrets["dummy"] = "not used"  # keeps the real secrets.toml out of the test
    return at.run()


@pytest.fixture
def store() -> TemplateStore:
    return TemplateStore(make_engine(load_settings().database_url))


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def create_reply_template(at: AppTest) -> AppTest:
    at.selectbox(key="pt_name").select(NEW).run()
    at.text_input(key=f"name:{NEW}:0").input("support.reply")
    at.text_area(key=f"sys:{NEW}:0").input("You answer customers.")
    at.text_area(key=f"user:{NEW}:0").input("Reply to {{ customer }}.").run()
    return button(at, "Create template").click().run()


def test_the_page_opens_on_the_shipped_prompts_without_errors(page):
    assert not page.exception and not page.error
    assert page.selectbox(key="pt_name").options == ["chat.system", "rag.answer", NEW]
    assert "production → v1" in page.caption[0].value


def test_an_author_creates_edits_diffs_deploys_and_rolls_back_a_template(page, store):
    at = create_reply_template(page)
    assert not at.exception and not at.error
    assert shown(at.success[0].value).startswith("Saved support.reply v1")
    assert at.selectbox(key="pt_name").value == "support.reply"

    at.text_area(key="user:support.reply:1").input("Reply kindly to {{ customer }}.")
    at.text_input(key="note:support.reply:1").input("kinder").run()
    button(at, "Save version").click().run()
    assert shown(at.success[0].value).startswith("Saved support.reply v2")
    assert [(v.version, v.note) for v in store.history("support.reply")] == [(2, "kinder"), (1, "Created")]

    codes = [c.value for c in at.code]  # the user-message diff: v1 on the left, v2 on the right
    assert "- Reply to {{ customer }}." in codes and "+ Reply kindly to {{ customer }}." in codes

    assert button(at, "Move label").disabled  # nothing moves without the confirmation
    at.checkbox(key="ls:support.reply:production:2").check().run()
    button(at, "Move label").click().run()
    assert store.get_by_label("support.reply", "production").version == 2

    at.selectbox(key="lt:support.reply:2").select(1).run()
    at.text_input(key="lw:support.reply").input("customers preferred v1")
    at.checkbox(key="ls:support.reply:production:1").check().run()
    button(at, "Move label").click().run()
    assert shown(at.success[0].value) == "production now points at v1."
    assert store.get_by_label("support.reply", "production").version == 1
    moves = [(m.from_version, m.to_version, m.note) for m in store.label_history("support.reply")]
    assert moves == [(2, 1, "customers preferred v1"), (None, 2, "")]


def test_saving_without_changes_says_so_and_creates_no_version(page, store):
    page.selectbox(key="pt_name").select("chat.system").run()
    button(page, "Save version").click().run()
    assert "Nothing changed since v1" in page.info[0].value
    assert len(store.history("chat.system")) == 1


def test_an_unsafe_template_is_explained_and_cannot_be_saved(page, store):
    page.selectbox(key="pt_name").select("chat.system").run()
    page.text_area(key="sys:chat.system:1").input("{{ cycler.__init__.__globals__.os.popen('id').read() }}").run()
    assert "Only plain variable names" in page.error[0].value
    assert button(page, "Save version").disabled
    assert len(store.history("chat.system")) == 1


def test_a_missing_variable_in_try_it_is_named(page):
    at = create_reply_template(page)
    button(at, "Run").click().run()
    assert "No value for customer" in at.error[0].value


def logged_calls() -> list[LlmCall]:
    with Session(make_engine(load_settings().database_url)) as s:
        return list(s.scalars(select(LlmCall).order_by(LlmCall.id)))


def test_try_it_runs_a_saved_version_on_the_offline_model_and_logs_that_version(page):
    page.selectbox(key="pt_name").select("rag.answer").run()
    page.text_area(key="var:rag.answer:context").input("[1] The office opens at 9am on weekdays.")
    page.text_area(key="var:rag.answer:question").input("When does the office open?").run()
    button(page, "Run").click().run()
    assert not page.error
    assert "office opens at 9am" in page.code[0].value
    assert any(shown(c.value).startswith("offline/extractive · ") for c in page.caption)
    [row] = logged_calls()
    assert (row.feature, row.template_name, row.template_version, row.status) == ("prompts", "rag.answer", 1, "ok")


def test_chat_runs_the_production_version_and_logs_it(store):
    at = AppTest.from_file("../pages/chat.py", default_timeout=60)
    at.secrets["dummy"] = "not used"
    at.run()
    v2 = store.save_version(Template(name="chat.system", system="Be terse."), "ann", "terse")
    store.move_label("chat.system", "production", v2.version, "ann")
    at.chat_input[0].set_value("The library is on floor 3. Where is the library?").run()
    assert not at.exception
    [row] = logged_calls()
    assert (row.feature, row.template_name, row.template_version) == ("chat", "chat.system", 2)
    assert row.prompt.startswith("[system] Be terse.")
