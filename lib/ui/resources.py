"""The one module that knows Streamlit's caches: shared clients, models and the engine."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import streamlit as st
from langchain_core.embeddings import Embeddings
from sqlalchemy import Engine
from streamlit.errors import StreamlitSecretNotFoundError

from lib.core.heap import freeze_startup_heap
from lib.core.identity import Identity, local_identity, not_allowed_message, signed_in_identity
from lib.core.settings import ConfigError, Settings, check_secrets_files, load_settings
from lib.documents.embeddings import LOCAL_MODEL, LazyEmbeddings, make_local_embeddings
from lib.documents.indexing import list_collections
from lib.documents.vectorstore import make_chroma_client
from lib.services import Services, open_engine, retrieval_from
from lib.telemetry.metrics import MetricsEndpoint, Sources, serve_metrics
from lib.ui.untrusted import untrusted_markdown

if TYPE_CHECKING:  # the queue imports Huey (and psycopg): a page's first draw does not need it
    from lib.documents.embeddings import CachedEmbeddings
    from lib.documents.indexing import Indexer
    from lib.documents.retrieval import RetrievalSettings, Retriever
    from lib.gateway.client import Gateway
    from lib.jobs.queue import WorkQueue

log = logging.getLogger(__name__)


def _secrets() -> dict[str, Any]:
    """Streamlit's secrets; ConfigError when a secrets file exists but cannot be parsed (fail closed)."""
    check_secrets_files(st.get_option("secrets.files"))
    try:
        return {k: st.secrets[k] for k in st.secrets}
    except StreamlitSecretNotFoundError:  # no secrets file at all: the environment alone configures the app
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
    return open_engine(url)


@st.cache_resource(show_spinner=False)
def _metrics(port: int, addr: str, url: str) -> MetricsEndpoint:
    return serve_metrics(port, Sources(_engine(url)), addr)


def get_engine(settings: Settings) -> Engine:
    """The migrated engine for the configured database (one per URL per process).

    With WORKBENCH_METRICS_PORT, the process's metrics port is served from its first run on (app.py calls this
    first); a taken port is a ConfigError, so app.py stops with it. The gateway's breakers join when the services
    are built.
    """
    engine = _engine(settings.database_url)
    if settings.metrics_port is not None:
        _metrics(settings.metrics_port, settings.metrics_addr, settings.database_url)
    return engine


@st.cache_resource(show_spinner=False)
def _local_model() -> LazyEmbeddings:
    """The process's holder of the local MiniLM model (cheap: loads nothing until asked, or preloaded)."""
    return LazyEmbeddings(make_local_embeddings)


def get_embeddings() -> Embeddings:
    """The local MiniLM embedding model, loaded once per process (waits for the background load if it runs)."""
    return _local_model().model()


_preload: tuple[LazyEmbeddings, threading.Thread] | None = None
_preload_lock = threading.Lock()


def _load_quietly(holder: LazyEmbeddings, after: threading.Thread | None) -> None:
    if after is not None:
        after.join()  # the page's script run first: torch's import would hold the GIL while its last deltas are sent
    try:
        holder.model()
    except Exception:  # the first use loads it again and shows the user why it fails
        log.exception("loading the local embedding model in the background failed")
    freeze_startup_heap()  # the app and its model, loaded: later full collections (every session waits) skip them


def preload_embeddings(holder: LazyEmbeddings, after: threading.Thread | None = None) -> threading.Thread:
    """Start loading the local model in a daemon thread, once per process per holder; returns that thread.

    The load begins once the thread `after` has ended (the script run that drew the first page: its last deltas and
    Streamlit's garbage collection after it are not slowed down by the import). The first question then finds the
    model loaded, or waits (on the holder's lock) only for the rest of the load; a question asked before the load
    began loads it itself.
    """
    global _preload
    with _preload_lock:
        if _preload is None or _preload[0] is not holder:  # a new holder after Streamlit's caches were cleared
            thread = threading.Thread(
                target=_load_quietly, args=(holder, after), name="workbench-embeddings-preload", daemon=True
            )
            thread.start()
            _preload = (holder, thread)
        return _preload[1]


@functools.lru_cache(maxsize=2048)  # a pure function of immutable text: no Streamlit cache needed (no copies)
def _stored_markdown(text: str) -> str:
    return untrusted_markdown(text)


_MEMO_CHARS = 20_000  # longer texts are escaped each time (2,048 of these at most: ~80 MB at worst)


def show_stored(text: str) -> None:
    """show_untrusted for stored text (saved messages, their passages): made safe once per process, not on every
    rerun (a Chat rerun redraws 50 messages and the passages they cite: 15-50 ms of escaping and parsing)."""
    st.markdown(_stored_markdown(text) if len(text) <= _MEMO_CHARS else untrusted_markdown(text))


def auth_enabled() -> bool:
    """True when OIDC sign-in is configured ([auth] in .streamlit/secrets.toml)."""
    return "auth" in _secrets()


def current_identity() -> Identity:
    """The signed-in user with their roles; with sign-in off, the local user with every role."""
    if auth_enabled():
        if st.user.is_logged_in:
            settings = get_settings()
            return signed_in_identity(st.user.to_dict(), settings.role_map, settings.require_verified_email)
        return Identity(name="not signed in", email=None, roles=frozenset(), signed_in=False)
    return local_identity(get_settings().local_user)


def current_user() -> str:
    """The signed-in user's (verified) email; with sign-in off, the local user's name. For logs and budgets."""
    return current_identity().name


def current_owner() -> str:
    """Whose data this session may see (conversations): the provider's subject, never the email."""
    return current_identity().owner


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


def stop_misconfigured(exc: ConfigError) -> NoReturn:
    """Show why the settings cannot be read and stop: a broken configuration never means open access."""
    st.error(f"The workbench is misconfigured and will not start: {exc}", icon=":material/error:")
    st.stop()
    raise AssertionError("st.stop() returned")  # pragma: no cover - st.stop raises


def require_page(page: str) -> Identity:
    """Stop the page with "not allowed" unless the user has its role (checked on the server, every run)."""
    _leave_legacy_multipage_mode()
    try:
        identity = current_identity()
    except ConfigError as exc:  # unreadable settings: nobody gets in, whatever the page
        stop_misconfigured(exc)
    if not identity.may_open(page):
        st.error(not_allowed_message(identity, page), icon=":material/block:")
        st.stop()
    return identity


@st.cache_resource(show_spinner=False)
def _chroma(location: str, _settings: Settings) -> Any:
    return make_chroma_client(_settings)


def get_chroma(settings: Settings) -> Any:
    """One Chroma client per location per process (Chroma wants one PersistentClient per path)."""
    where = f"{settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else str(settings.chroma_path)
    return _chroma(where, settings)


def uses_local_model(settings: Settings) -> bool:
    """True when questions need the local model: local document embeddings, or the offline answerer by default."""
    return settings.embedding_model == LOCAL_MODEL or settings.default_model.startswith("offline/")


@st.cache_resource(show_spinner=False)
def _services(key: str, _settings: Settings) -> Services:
    local = _local_model()
    services = Services(
        _settings,
        engine=get_engine(_settings),
        chroma_factory=functools.partial(get_chroma, _settings),  # opened after the first draw, or on first use
        local_embeddings=local,
    )
    services.start_metrics()  # this process's Prometheus metrics port, once per process (none unless configured)
    with _unstarted_lock:
        _unstarted.append((services, local))  # their background work: start_background()
    return services


_unstarted: list[tuple[Services, LazyEmbeddings]] = []
_unstarted_lock = threading.Lock()


def get_services(settings: Settings) -> Services:
    """The process-wide shared objects for these settings (lib.services builds them; this only caches).

    What they start besides (start_background) begins when app.py's run ends, once the page is drawn; a page run
    on its own, not through app.py (tests), starts it at once.
    """
    services = _services(settings_key(settings), settings)
    if not st.session_state.get(_APP_RAN):
        start_background()
    return services


def start_background() -> None:
    """Start what newly built services run beside the pages, once per services: the local embedding model's load
    (a thread), the recovery of jobs a dead process left unfinished, this process's queue workers, and then, in a
    thread once the model is loaded, the Chroma client.

    app.py calls this after the page has run, so the first draw shares the CPU with none of it (the Huey, torch and
    chromadb imports take seconds on a busy machine). An error is raised, and the next run tries again.
    """
    with _unstarted_lock:
        todo = _unstarted[:]
        _unstarted.clear()
    for services, local in todo:
        warm = services.settings.preload_embeddings  # WORKBENCH_PRELOAD_EMBEDDINGS: warm the process up at start
        run = threading.current_thread()  # the script run that drew the page: the model's import waits for its end
        after = None if run is threading.main_thread() else run
        preload = preload_embeddings(local, after) if warm and uses_local_model(services.settings) else None
        try:
            services.recover_interrupted()  # command-line jobs a dead process left unfinished, once per process
            services.start_workers()  # this process's queue workers, once per process (none: WORKBENCH_APP_WORKERS=0)
        except BaseException:
            with _unstarted_lock:
                _unstarted.append((services, local))
            raise
        if warm:
            name = "workbench-chroma-open"
            threading.Thread(target=_open_chroma, args=(services, preload), name=name, daemon=True).start()


def _open_chroma(services: Services, preload: threading.Thread | None) -> None:
    if preload is not None:
        preload.join()  # the model first: the first question waits for it, not for Chroma
    try:
        if list_collections(services.engine):  # none yet: nobody asks a collection soon, Chroma opens on first use
            services.client  # noqa: B018 - opens Chroma (imports chromadb) before the first question to a collection
    except Exception:  # its first use opens it again and shows the user why it fails
        log.exception("opening Chroma in the background failed")


def get_gateway(settings: Settings) -> Gateway:
    """The process-wide gateway (its circuit breakers are shared by every session)."""
    return get_services(settings).gateway


def get_document_embeddings(settings: Settings) -> CachedEmbeddings:
    """The configured embedding model behind the persistent embedding cache in the data dir."""
    return get_services(settings).embeddings


def get_work_queue(settings: Settings) -> WorkQueue:
    """The process-wide job queue (indexing and batch runs go on it; this process may also work it)."""
    return get_services(settings).queue


def get_indexer(settings: Settings) -> Indexer:
    """The process-wide indexer."""
    return get_services(settings).indexer


def get_retriever(settings: Settings) -> Retriever:
    """The process-wide retriever (holds the BM25 indexes)."""
    return get_services(settings).retriever


def retrieval_settings(settings: Settings) -> RetrievalSettings:
    """Retrieval settings from the app settings."""
    return retrieval_from(settings)


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
