"""The one module that knows Streamlit's caches: shared clients, models and the engine."""

from __future__ import annotations

import getpass
import hashlib
import os
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from lib.config import Settings, load_settings
from lib.db import make_engine, migrate
from lib.gateway import Gateway, default_model_factory


def _secrets() -> dict[str, Any]:
    try:
        return {k: st.secrets[k] for k in st.secrets}
    except Exception:  # no secrets.toml: the environment alone configures the app
        return {}


def get_settings() -> Settings:
    """Settings from the environment and .streamlit/secrets.toml (cheap; rebuilt each run)."""
    return load_settings(secrets=_secrets())


def settings_key(settings: Settings) -> str:
    """A cache key that changes whenever any setting (keys included) changes; never shown."""
    keys = "|".join(p.api_key or "" for p in settings.providers)
    return hashlib.sha256(f"{settings!r}|{keys}".encode()).hexdigest()


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


def get_engine(settings: Settings) -> Engine:
    """The migrated engine for the configured database (one per URL per process)."""
    return _engine(settings.database_url)


@st.cache_resource(show_spinner="Loading the local embedding model…")
def get_embeddings():
    """The local MiniLM embedding model, loaded once per process."""
    from lib.embeddings import make_local_embeddings

    return make_local_embeddings()


@st.cache_resource(show_spinner=False)
def _gateway(_settings: Settings, key: str) -> Gateway:
    return Gateway(_settings, get_engine(_settings), model_factory=default_model_factory(get_embeddings))


def get_gateway(settings: Settings) -> Gateway:
    """The process-wide gateway (its circuit breakers are shared by every session)."""
    return _gateway(settings, settings_key(settings))


def current_user() -> str:
    """The signed-in user; with sign-in off, the local user."""
    return os.environ.get("WORKBENCH_USER") or getpass.getuser()


# Usage dashboard queries that may be cached (name -> lib.usage function taking engine, filter, *args).
USAGE_QUERIES = ("headline", "spend_over_time", "tokens_over_time", "latency_over_time", "errors_over_time",
                 "breakdown", "top_calls", "unpriced_calls", "cost_per_useful_answer", "daily_spend",
                 "what_if", "filter_options")


@st.cache_data(ttl=60, show_spinner=False)
def _usage_query(url: str, name: str, f, args: tuple):
    from lib import usage

    return getattr(usage, name)(_engine(url), f, *args)


def run_usage_query(settings: Settings, name: str, f, *args):
    """The result of lib.usage.`name`(engine, f, *args), cached for a minute per filter and arguments."""
    if name not in USAGE_QUERIES:
        raise ValueError(f"{name!r} is not a usage query.")
    return _usage_query(settings.database_url, name, f, args)
