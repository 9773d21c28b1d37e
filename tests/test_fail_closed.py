"""Fail closed: settings that cannot be read stop the app with a clear message; they never mean open access.
Unexpected errors show an error id, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from lib.core.settings import ConfigError, check_secrets_files, load_settings

ROOT = Path(__file__).resolve().parent.parent
BROKEN = '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback\ncookie_secret = "x"\n'  # a missing quote


@pytest.fixture
def secrets_file(tmp_path):
    """Point Streamlit's secrets.files at a file of the test's own (restored afterwards)."""
    saved = st_config.get_option("secrets.files")
    path = tmp_path / "secrets.toml"
    st_config.set_option("secrets.files", [str(path)])
    st.secrets._reset()
    yield path
    st_config.set_option("secrets.files", saved)
    st.secrets._reset()


def test_a_secrets_file_that_does_not_parse_is_an_error_naming_the_file(tmp_path):
    broken = tmp_path / "secrets.toml"
    broken.write_text(BROKEN)
    with pytest.raises(ConfigError, match=r"secrets\.toml cannot be read .*does not start"):
        check_secrets_files([broken, tmp_path / "absent.toml"])
    check_secrets_files([tmp_path / "absent.toml", tmp_path])  # absent files and directories are fine


def test_a_secrets_file_that_is_not_utf8_is_an_error(tmp_path):
    broken = tmp_path / "secrets.toml"
    broken.write_bytes(b'OPENAI_API_KEY = "\xff\xfe"\n')
    with pytest.raises(ConfigError):
        check_secrets_files([broken])


def test_a_broken_secrets_file_stops_the_app_before_anyone_gets_in(secrets_file):
    secrets_file.write_text(BROKEN)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert [e.value for e in at.error] and "misconfigured" in at.error[0].value
    assert "secrets.toml cannot be read" in at.error[0].value
    assert not at.sidebar.markdown, "the sidebar (the local user with every role) must not be drawn"
    assert not at.exception


@pytest.mark.parametrize("page", ["pages/admin.py", "pages/chat.py"])
def test_a_broken_secrets_file_stops_a_page_opened_directly(secrets_file, page):
    secrets_file.write_text(BROKEN)
    at = AppTest.from_file(str(ROOT / page), default_timeout=60).run()
    assert at.error and "misconfigured" in at.error[0].value
    assert not at.title, "the page must not draw anything past the error"


def test_a_readable_secrets_file_still_configures_the_app(secrets_file):
    secrets_file.write_text('WORKBENCH_DEFAULT_MODEL = "offline/extractive"\n')
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.error and not at.exception


@pytest.mark.parametrize(
    ("roles", "problem"),
    [
        ('{"ada@example.com": ["admn"]}', "'admn' for 'ada@example.com' is not a role"),
        ('{"ada@example.com": "superuser"}', "'superuser'"),
        ('{"example.com": ["staff"]}', "is not an email, an @domain or '*'"),
        ('{"ada@example.com": [1]}', "must be a list of names"),
        ('["ada@example.com"]', "must be a JSON object"),
        ('{"ada@example.com": ["admin"]', "must be a JSON object"),
    ],
)
def test_a_role_map_with_a_mistake_is_refused_not_half_applied(roles, problem):
    with pytest.raises(ConfigError, match="WORKBENCH_ROLES") as err:
        load_settings(env={"WORKBENCH_ROLES": roles})
    assert problem in str(err.value)


def test_a_correct_role_map_loads():
    settings = load_settings(
        env={"WORKBENCH_ROLES": '{"ada@example.com": ["admin"], "@example.com": "staff", "*": []}'}
    )
    assert settings.role_map == {"ada@example.com": ("admin",), "@example.com": ("staff",), "*": ()}


def failing_page():
    from lib.ui.failures import run_guarded

    def boom():
        raise RuntimeError("connection to db-internal.example:5432 refused")

    run_guarded(boom)


def test_an_unexpected_error_shows_an_error_id_and_no_details(caplog):
    at = AppTest.from_function(failing_page).run()
    assert len(at.exception) == 1
    shown = at.exception[0]
    assert "error id" in shown.message and "db-internal" not in shown.message
    assert not shown.stack_trace
    assert "db-internal.example" in caplog.text  # the details are in the server log, with the same id
    error_id = shown.message.split("error id ", 1)[1].split(")", 1)[0]
    assert error_id in caplog.text


def test_the_app_hides_error_details_from_visitors():
    assert 'showErrorDetails = "none"' in (ROOT / ".streamlit" / "config.toml").read_text()
