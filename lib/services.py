"""The composition root: every shared object (engine, gateway, Chroma client, embeddings, indexer, retriever,
template store) is built here, one way, from one Settings.

The command line, the queue workers, the benchmarks and lib.ui all take their objects from `Services`; lib.ui only adds
Streamlit's caches around it. Each object is built on first use, so a command that only needs the database
never loads the embedding model. Imports every capability package below lib.ui and lib.cli.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from sqlalchemy import Engine

from lib.core.db import make_engine, migrate
from lib.core.settings import Settings
from lib.documents.embeddings import LOCAL_MODEL, CachedEmbeddings, LazyEmbeddings, make_local_embeddings
from lib.documents.indexing import ChunkingSettings, Indexer, purge_orphan_chunks
from lib.documents.ocr import OcrSettings
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.documents.vectorstore import make_chroma_client
from lib.gateway.client import Gateway, GatewayEmbeddings, default_model_factory
from lib.gateway.cost_control import purge_expired_cache
from lib.jobs import items as job_items
from lib.jobs.housekeeping import delete_old_calls, delete_old_windows
from lib.jobs.limits import ProviderLimiter
from lib.prompts.store import TemplateStore, ensure_builtin_templates
from lib.telemetry.metrics import MetricsEndpoint, Sources, serve_metrics
from lib.telemetry.tracing import install_tracing

# Imported where used: the queue (Huey, and psycopg through it), the documents, compare and pipeline jobs and the
# pipeline store. A page's first draw (Chat) needs none of them, and they cost about a second on a busy machine.
if TYPE_CHECKING:
    from lib.assistant.turn import Assistant
    from lib.jobs.queue import QueueConsumer, WorkQueue
    from lib.pipelines import runs as pipeline_runs
    from lib.pipelines.store import PipelineStore


def open_engine(url: str) -> Engine:
    """An engine on `url`, migrated to the newest schema, with the built-in prompts stored (idempotent)."""
    engine = make_engine(url)
    migrate(engine)
    ensure_builtin_templates(engine)  # the prompts the app runs: v1, labelled production
    return engine


def chunking_from(settings: Settings) -> ChunkingSettings:
    """Chunking settings from the app settings."""
    return ChunkingSettings(
        settings.chunk_size, settings.chunk_overlap, int(settings.max_file_mb * 2**20), settings.title_headers
    )


def retrieval_from(settings: Settings, k: int | None = None, mode: str | None = None) -> RetrievalSettings:
    """Retrieval settings from the app settings, optionally overridden."""
    return RetrievalSettings(
        k=k or settings.top_k, mode=mode or settings.search_mode, vector_weight=settings.hybrid_weight
    )


class Services:
    """The workbench's shared objects for one Settings, each built on first use and then reused.

    Pass `engine`, `chroma` or `local_embeddings` to share ones built elsewhere (lib.ui shares one engine per
    database URL and one embedding model per process); anything not passed is built from the settings.
    `chroma_factory` builds the Chroma client on first use instead (lib.ui: its one client per location, without
    opening Chroma on a page's first draw).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        chroma: Any | None = None,
        chroma_factory: Callable[[], Any] | None = None,
        local_embeddings: Embeddings | Callable[[], Embeddings] | None = None,
    ) -> None:
        self.settings = settings
        self._chroma_factory = chroma_factory or (lambda: make_chroma_client(settings))
        self._lock = threading.RLock()  # two sessions' first use builds one object, not two
        self._given: dict[str, Any] = {"engine": engine, "client": chroma}
        if isinstance(local_embeddings, Embeddings):
            self._local: Embeddings = local_embeddings
        else:  # loaded on first use, so work that embeds nothing never pays for it
            self._local = LazyEmbeddings(local_embeddings or make_local_embeddings)
        install_tracing(settings)  # once per process; nothing is installed when no OTLP endpoint is set

    def _build(self, name: str, make: Callable[[], Any]) -> Any:
        with self._lock:
            if self._given.get(name) is None:
                self._given[name] = make()
            return self._given[name]

    @property
    def engine(self) -> Engine:
        """The migrated database engine."""
        return self._build("engine", lambda: open_engine(self.settings.database_url))

    @property
    def client(self) -> Any:
        """The Chroma client: embedded in the data dir, or a server via CHROMA_HOST."""
        return self._build("client", self._chroma_factory)

    def local_embeddings(self) -> Embeddings:
        """The bundled MiniLM model (loaded on first call; the offline answerer uses it too)."""
        return self._local.model() if isinstance(self._local, LazyEmbeddings) else self._local

    @cached_property
    def gateway(self) -> Gateway:
        """The gateway every model call goes through (its circuit breakers are shared by all its users)."""
        with self._lock:
            return Gateway(self.settings, self.engine, model_factory=default_model_factory(self.local_embeddings))

    @cached_property
    def embeddings(self) -> CachedEmbeddings:
        """The configured embedding model (local MiniLM, or a provider's through the gateway) behind the cache."""
        with self._lock:
            model = self.settings.embedding_model
            inner: Embeddings
            if model == LOCAL_MODEL:
                inner = self._local
            else:
                inner = GatewayEmbeddings(self.gateway, model)
            return CachedEmbeddings(inner, model, self.settings.data_dir / "cache" / "embeddings.sqlite")

    @cached_property
    def indexer(self) -> Indexer:
        """Parses, splits, embeds and stores documents, swapping versions safely."""
        with self._lock:
            s = self.settings
            return Indexer(
                self.engine,
                self.client,
                self.embeddings,
                s.data_dir / "originals",
                chunking_from(s),
                s.embedding_model,
                OcrSettings(s.ocr, s.ocr_languages, s.ocr_max_pages, s.ocr_timeout_s),
            )

    @cached_property
    def retriever(self) -> Retriever:
        """Vector, BM25 and hybrid search over a collection (holds the BM25 indexes)."""
        with self._lock:
            return Retriever(self.engine, self.client, self.embeddings, self.settings.embedding_model)

    @cached_property
    def templates(self) -> TemplateStore:
        """The prompt template store."""
        return TemplateStore(self.engine)

    @cached_property
    def pipelines(self) -> PipelineStore:
        """The pipeline store (versions and labels)."""
        from lib.pipelines.store import PipelineStore

        return PipelineStore(self.engine)

    @cached_property
    def pipeline_deps(self) -> pipeline_runs.RunDeps:
        """What pipeline runs, trials and review decisions need (gateway, templates, queue, provider limits)."""
        from lib.pipelines import runs as pipeline_runs

        return pipeline_runs.RunDeps(self.gateway, self.templates, self.queue, self.limiter)

    @cached_property
    def assistant(self) -> Assistant:
        """The tool-using assistant's agent and the checkpoints of its paused turns (one per process)."""
        from lib.assistant.turn import Assistant  # LangChain's agent stack loads only when the assistant is used

        return Assistant()

    def retrieval(self, k: int | None = None, mode: str | None = None) -> RetrievalSettings:
        """Retrieval settings from the app settings, optionally overridden."""
        return retrieval_from(self.settings, k, mode)

    @cached_property
    def limiter(self) -> ProviderLimiter:
        """Provider concurrency and rate limits for queued work (WORKBENCH_PROVIDER_LIMITS), shared by all workers."""
        return ProviderLimiter(self.engine, self.settings.provider_limits)

    @cached_property
    def queue(self) -> WorkQueue:
        """The job queue, with every kind of queued work and the scheduled housekeeping registered.

        Handlers reach the indexer and gateway only when an item runs, so enqueueing loads no model.
        """
        from huey import crontab

        from lib.compare import runs as compare_runs
        from lib.documents import jobs as ingest_jobs
        from lib.jobs.queue import WorkQueue
        from lib.pipelines import review as pipeline_review
        from lib.pipelines import runs as pipeline_runs

        with self._lock:
            queue = WorkQueue(self.settings, self.engine)
            queue.register(
                ingest_jobs.KIND,
                lambda ctx: ingest_jobs.index_item(self.engine, self.indexer, ctx),
                lambda job_id: ingest_jobs.settle_job(self.engine, job_id),
            )
            queue.register(
                compare_runs.KIND,
                lambda ctx: compare_runs.run_case_item(self.gateway, self.templates, self.limiter, ctx),
                lambda run_id: compare_runs.settle_run(self.engine, run_id),
                overlap=True,  # its items hold a call slot only around their model calls
            )
            queue.register(
                pipeline_runs.KIND,
                lambda ctx: pipeline_runs.run_row_item(self.pipeline_deps, ctx),
                lambda run_id: pipeline_runs.settle_run(self.engine, run_id),
                overlap=True,
            )
            queue.periodic("recover", crontab(minute="*/5"), self.recover_interrupted)
            queue.periodic(
                "pipeline_review_timeouts",
                crontab(minute="*"),
                lambda: pipeline_review.expire_reviews(self.pipeline_deps),
            )
            queue.periodic("purge_cache", crontab(minute="7"), lambda: purge_expired_cache(self.engine))
            queue.periodic("queue_cleanup", crontab(minute="27"), self.clean_queue)
            if self.settings.log_retention_days:
                days = self.settings.log_retention_days
                queue.periodic("log_retention", crontab(minute="17"), lambda: delete_old_calls(self.engine, days))
            return queue

    def recover_interrupted(self) -> int:
        """Command-line jobs of dead processes marked failed, their half-written chunks purged; returns how many."""
        from lib.documents import jobs as ingest_jobs

        recovered = ingest_jobs.recover_interrupted_jobs(self.engine)
        if recovered:
            purge_orphan_chunks(self.engine, self.client, self.embeddings)
        return recovered

    def clean_queue(self) -> None:
        """Drop stored bytes of finished items and old rate-limit windows."""
        job_items.delete_old_blobs(self.engine)
        delete_old_windows(self.engine)

    def start_workers(self) -> QueueConsumer | None:
        """Start this process's embedded queue workers (once per process); None when app processes do not work."""
        from lib.jobs.queue import ensure_embedded

        return ensure_embedded(self.queue, self.settings.app_workers)

    def start_metrics(self, port: int | None = None) -> MetricsEndpoint | None:
        """Serve this process's Prometheus metrics on `port` or WORKBENCH_METRICS_PORT (once per process); None: off.

        MetricsPortInUse when another process holds the port. The gauges read this engine (budgets, job items, the
        pipelines' review queue) and this gateway's breakers.
        """
        port = port or self.settings.metrics_port
        if port is None:
            return None
        return serve_metrics(port, Sources(self.engine, self.gateway), self.settings.metrics_addr)


def build_services(settings: Settings, embeddings: Embeddings | None = None) -> Services:
    """The shared objects for `settings` (`embeddings`: a local model already loaded, to reuse)."""
    return Services(settings, local_embeddings=embeddings)
