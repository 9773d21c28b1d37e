"""Settings come from the environment and secrets, and bad settings say what to fix."""

import json

import pytest

from lib.core.settings import OFFLINE_MODEL, ConfigError, load_settings


def test_with_nothing_configured_the_offline_answerer_is_the_default(tmp_path):
    s = load_settings(env={"WORKBENCH_DATA_DIR": str(tmp_path)})
    assert s.default_model == OFFLINE_MODEL
    assert s.model_names() == [OFFLINE_MODEL]
    assert s.database_url == f"sqlite:///{tmp_path / 'workbench.db'}"
    assert s.chroma_path == tmp_path / "chroma"


def test_an_openai_key_enables_openai_models_and_makes_one_the_default():
    s = load_settings(env={"OPENAI_API_KEY": "sk-test-abcdefghijklmnopqrstuvwxyz"})
    assert s.default_model == "openai/gpt-4.1-mini"
    assert "openai/gpt-4o" in s.model_names()
    assert "sk-test" not in repr(s)


def test_compatible_endpoints_come_from_json_env_and_from_secrets():
    env = {
        "WORKBENCH_PROVIDERS": json.dumps(
            {"ollama": {"base_url": "http://127.0.0.1:11434/v1", "models": ["llama3.1:8b"], "timeout_s": 5}}
        )
    }
    secrets = {"providers": {"vllm": {"base_url": "http://gpu:8000/v1", "models": "qwen,mistral"}}}
    s = load_settings(env=env, secrets=secrets)
    assert s.provider("ollama").timeout_s == 5
    assert s.provider("vllm").models == ("qwen", "mistral")
    assert set(s.model_names()) >= {"ollama/llama3.1:8b", "vllm/qwen", "offline/extractive"}


@pytest.mark.parametrize(
    "env, words",
    [
        ({"WORKBENCH_PROVIDERS": "{not json"}, "not valid JSON"),
        ({"WORKBENCH_PROVIDERS": json.dumps({"x": {"models": ["m"]}})}, "needs a base_url"),
        ({"WORKBENCH_PROVIDERS": json.dumps({"x": {"base_url": "http://h/v1"}})}, "lists no models"),
        ({"WORKBENCH_PROVIDERS": json.dumps({"offline": {"base_url": "http://h/v1", "models": ["m"]}})}, "reserved"),
        ({"WORKBENCH_DEFAULT_MODEL": "nope/model"}, "not one of the configured models"),
        ({"WORKBENCH_LOG_CONTENT": "everything"}, "must be one of"),
        ({"WORKBENCH_MAX_RETRIES": "three"}, "malformed"),
    ],
)
def test_bad_settings_raise_a_config_error_that_says_what_to_fix(env, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(env=env)
