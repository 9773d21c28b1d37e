"""The local embedding model loads in the background when an app process builds its services, and the first
question uses that load (waiting for it when it is not done) instead of loading the model itself."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from streamlit.testing.v1 import AppTest
from waiting import wait_for

from lib.ui import resources

ROOT = Path(__file__).resolve().parent.parent


class SlowModelFactory:
    """Stands in for make_local_embeddings: records which thread loads the model, and holds the load until told."""

    def __init__(self) -> None:
        self.loaded_by: list[str] = []
        self.release = threading.Event()

    def __call__(self) -> DeterministicFakeEmbedding:
        self.loaded_by.append(threading.current_thread().name)
        assert self.release.wait(60), "the test never let the model load"
        return DeterministicFakeEmbedding(size=384)


@pytest.fixture
def factory(monkeypatch) -> SlowModelFactory:
    fake = SlowModelFactory()
    monkeypatch.setattr(resources, "make_local_embeddings", fake)
    resources._local_model.clear()  # another test's holder (and its model) must not answer for this one
    yield fake
    fake.release.set()
    resources._local_model.clear()


def app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["WORKBENCH_TEST"] = "1"
    return at


def test_the_model_starts_loading_when_the_app_first_runs_and_the_first_answer_waits_for_that_load(
    factory, monkeypatch
):
    monkeypatch.setenv("WORKBENCH_PRELOAD_EMBEDDINGS", "1")
    at = app().run()  # the first run builds the services: the load starts, the page does not wait for it
    assert not at.exception
    # it starts once the run's thread has ended (the page's last deltas are sent without torch's import beside them)
    assert wait_for(lambda: factory.loaded_by == ["workbench-embeddings-preload"], timeout=30), factory.loaded_by
    assert resources._local_model()._model is None  # still loading
    factory.release.set()  # the load finishes while the user types
    at.chat_input[0].set_value("What is this workbench?").run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert factory.loaded_by == ["workbench-embeddings-preload"]  # the answer used the preloaded model
    at.run()  # and later runs start no second load
    assert factory.loaded_by == ["workbench-embeddings-preload"]


def test_with_preloading_off_nothing_is_loaded_until_a_question_needs_the_model(factory):
    factory.release.set()
    at = app().run()  # WORKBENCH_PRELOAD_EMBEDDINGS=0, as in every test (conftest)
    assert not at.exception
    assert factory.loaded_by == []
    at.chat_input[0].set_value("What is this workbench?").run()
    assert not at.exception
    assert len(factory.loaded_by) == 1 and factory.loaded_by[0] != "workbench-embeddings-preload"


def test_the_model_is_preloaded_only_where_questions_need_it():
    from lib.core.settings import load_settings

    assert resources.uses_local_model(load_settings(env={}))  # offline answerer, local embeddings
    providers = '{"acme": {"base_url": "http://127.0.0.1:9", "api_key": "k", "models": ["m1"]}}'
    remote = load_settings(env={"WORKBENCH_PROVIDERS": providers, "WORKBENCH_EMBEDDING_MODEL": "acme/e1"})
    assert not resources.uses_local_model(remote)


def test_the_background_load_begins_only_once_the_script_run_that_drew_the_page_has_ended(factory):
    from lib.documents.embeddings import LazyEmbeddings

    page_drawn = threading.Event()
    run = threading.Thread(target=page_drawn.wait, args=(60,), name="ScriptRunner.scriptThread")
    run.start()
    factory.release.set()
    holder = LazyEmbeddings(factory)
    preload = resources.preload_embeddings(holder, after=run)
    assert not wait_for(lambda: factory.loaded_by, timeout=0.5)  # the run still sends its page: no import beside it
    page_drawn.set()
    preload.join(60)
    assert factory.loaded_by == ["workbench-embeddings-preload"] and holder._model is not None
