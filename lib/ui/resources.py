"""The one module that knows Streamlit's caches: shared clients, models and the engine."""

from __future__ import annotations

import getpass
import hashlib
import os
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from lib.core.db import make_engine, migrate
from lib.core.identity import Identity, local_identity, not_allowed_message, signed_in_identity
from lib.core.settings import Settings, load_settings
from lib.gateway.client import Gateway, default_model_factory
from lib.prompts.store import ensure_builtin_templates


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
    ensure_builtin_templates(engine)  # the prompts the app runs: v1, labelled production
    return engine


def get_engine(settings: Settings) -> Engine:
    """The migrated engine for the configured database (one per URL per process)."""
    return _engine(settings.database_url)


@st.cache_resource(show_spinner="Loading the local embedding model…")
def get_embeddings():
    """The local MiniLM embedding model, loaded once per process."""
    from lib.documents.embeddings import make_local_embeddings

    return make_local_embeddings()


@st.cache_resource(show_spinner=False)
def _gateway(_settings: Settings, key: str) -> Gateway:
    return Gateway(_settings, get_engine(_settings), model_factory=default_model_factory(get_embeddings))


def get_gateway(settings: Settings) -> Gateway:
    """The process-wide gateway (its circuit breakers are shared by every session)."""
    return _gateway(settings, settings_key(settings))


def auth_enabled() -> bool:
    """True when OIDC sign-in is configured ([auth] in .streamlit/secrets.toml)."""
    return "auth" in _secrets()


def current_identity() -> Identity:
    """The signed-in user with their roles; with sign-in off, the local user with every role."""
    if auth_enabled():
        if st.user.is_logged_in:
            return signed_in_identity(st.user.to_dict(), get_settings().role_map)
        return Identity(name="not signed in", email=None, roles=frozenset(), signed_in=False)
    return local_identity(os.environ.get("WORKBENCH_USER") or getpass.getuser())


def current_user() -> str:
    """The signed-in user's email; with sign-in off, the local user's name."""
    return current_identity().name


def _leave_legacy_multipage_mode() -> None:
    """Rerun through app.py when Streamlit ran a page file on its own.

    Until app.py has called st.navigation once in the process, Streamlit treats pages/ as its legacy
    multipage folder: a deep link (/prompts) as a fresh server's first request runs the page without app.py
    (no identity, no navigation, file names in the sidebar). The rerun resolves the same URL through app.py.
    Only a session that has not been through app.py yet reruns: its first run carries no input to lose.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if not st.session_state.get(_APP_RAN):
            st.rerun()


_APP_RAN = "_workbench_app_ran"


def note_app_run() -> None:
    """Called by app.py on every run: this session goes through the app's navigation."""
    st.session_state[_APP_RAN] = True


def require_page(page: str) -> Identity:
    """Stop the page with "not allowed" unless the user has its role (checked on the server, every run)."""
    _leave_legacy_multipage_mode()
    identity = current_identity()
    if not identity.may_open(page):
        st.error(not_allowed_message(identity, page), icon=":material/block:")
        st.stop()
    return identity


@st.cache_resource(show_spinner=False)
def _chroma(location: str, _settings: Settings):
    from lib.documents.vectorstore import make_chroma_client

    return make_chroma_client(_settings)


def get_chroma(settings: Settings):
    """One Chroma client per location per process (Chroma wants one PersistentClient per path)."""
    where = f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(settings.chroma_path)
    return _chroma(where, settings)


@st.cache_resource(show_spinner=False)
def _cached_embeddings(key: str, _settings: Settings):
    from lib.documents.embeddings import LazyEmbeddings
    from lib.services import document_embeddings

    return document_embeddings(_settings, get_engine(_settings), LazyEmbeddings(get_embeddings), get_gateway(_settings))


def get_document_embeddings(settings: Settings):
    """The configured embedding model behind the persistent embedding cache in the data dir."""
    return _cached_embeddings(settings_key(settings), settings)


@st.cache_resource(show_spinner=False)
def _indexer(key: str, _settings: Settings):
    from lib.documents.indexing import Indexer, purge_orphan_chunks
    from lib.documents.jobs import recover_interrupted_jobs
    from lib.services import chunking_from

    engine, client, emb = get_engine(_settings), get_chroma(_settings), get_document_embeddings(_settings)
    if recover_interrupted_jobs(engine):
        purge_orphan_chunks(engine, client, emb)
    return Indexer(
        engine, client, emb, _settings.data_dir / "originals", chunking_from(_settings), _settings.embedding_model
    )


def get_indexer(settings: Settings):
    """The process-wide indexer (recovers jobs a previous process left unfinished, once)."""
    return _indexer(settings_key(settings), settings)


@st.cache_resource(show_spinner=False)
def _retriever(key: str, _settings: Settings):
    from lib.documents.retrieval import Retriever

    return Retriever(
        get_engine(_settings), get_chroma(_settings), get_document_embeddings(_settings), _settings.embedding_model
    )


def get_retriever(settings: Settings):
    """The process-wide retriever (holds the BM25 indexes)."""
    return _retriever(settings_key(settings), settings)


def retrieval_settings(settings: Settings):
    """Retrieval settings from the app settings."""
    from lib.documents.retrieval import RetrievalSettings

    return RetrievalSettings(k=settings.top_k, mode=settings.search_mode, vector_weight=settings.hybrid_weight)


# Usage dashboard queries that may be cached (name -> lib.usage.queries function taking engine, filter, *args).
USAGE_QUERIES = (
    "headline",
    "spend_over_time",
    "tokens_over_time",
    "latency_over_time",
    "errors_over_time",
    "breakdown",
    "top_calls",
    "unpriced_calls",
    "cost_per_useful_answer",
    "daily_spend",
    "what_if",
    "filter_options",
    "cache_savings",
)


@st.cache_data(ttl=60, show_spinner=False)
def _usage_query(url: str, name: str, f, args: tuple):
    from lib.usage import queries as usage

    return getattr(usage, name)(_engine(url), f, *args)


def run_usage_query(settings: Settings, name: str, f, *args):
    """The result of lib.usage.queries.`name`(engine, f, *args), cached for a minute per filter and arguments."""
    if name not in USAGE_QUERIES:
        raise ValueError(f"{name!r} is not a usage query.")
    return _usage_query(settings.database_url, name, f, args)


@st.cache_resource(show_spinner=False)
def get_run_jobs():
    """The process-wide registry of Compare batch runs working in the background."""
    from lib.compare.runs import RunJobs

    return RunJobs()
