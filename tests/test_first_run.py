"""lib.ui.first_run: the garbage collector is paused for a fresh process's first page, once, and always resumed."""

from __future__ import annotations

import gc

import pytest

from lib.ui import first_run


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(first_run, "_state", {"paused": False, "done": False})
    was = gc.isenabled()
    yield
    gc.enable() if was else gc.disable()


def test_the_first_pause_turns_collection_off_until_resumed_and_later_pauses_do_nothing(fresh_state):
    gc.enable()
    first_run.pause()
    assert not gc.isenabled()
    first_run.resume()
    assert gc.isenabled()
    first_run.pause()  # a later run of the same process
    assert gc.isenabled()
    first_run.resume()
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_is_left_as_it_was(fresh_state):
    gc.disable()
    first_run.pause()
    first_run.resume()
    assert not gc.isenabled()  # resume turns on only what pause turned off


def test_a_first_run_that_never_reaches_its_end_has_collection_back_on_after_the_timer(fresh_state, monkeypatch):
    from waiting import wait_for

    gc.enable()
    monkeypatch.setattr(first_run, "RESUME_AFTER_S", 0.05)
    first_run.pause()  # e.g. stopped by a configuration error before app.py's end
    assert wait_for(gc.isenabled, timeout=10), "the collector was not resumed by the timer"
