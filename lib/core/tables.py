"""The tables. Each feature's tables live here; schema changes go through lib/migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Timezone-aware now in UTC (stored as UTC everywhere)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class LlmCall(Base):
    """The call log: one row per LLM call through the gateway, whatever its outcome."""

    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    session_id: Mapped[str | None] = mapped_column(String(64))
    user: Mapped[str | None] = mapped_column(String(255))
    feature: Mapped[str] = mapped_column(String(64), nullable=False)
    provider: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    template_name: Mapped[str | None] = mapped_column(String(255))
    template_version: Mapped[int | None] = mapped_column(Integer)
    experiment_id: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cost_usd: Mapped[float | None] = mapped_column(Float)  # NULL = unpriced, never a silent 0
    saved_usd: Mapped[float | None] = mapped_column(Float)  # what a cache hit would have cost
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # ok, error, aborted, cached, blocked, invalid
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    prompt: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    # Migration 0010: the pipeline run or assistant turn a call belongs to, its step, and its trace.
    run_id: Mapped[str | None] = mapped_column(String(64))
    step: Mapped[str | None] = mapped_column(String(64))
    pipeline_name: Mapped[str | None] = mapped_column(String(255))
    pipeline_version: Mapped[int | None] = mapped_column(Integer)
    trace_id: Mapped[str | None] = mapped_column(String(32))  # OpenTelemetry trace id, 32 hex digits

    __table_args__ = (
        Index("ix_llm_calls_created_at", "created_at"),
        Index("ix_llm_calls_run_id", "run_id"),
        # Migration 0015: with cost and time, for the most expensive calls of one value (lib.usage.queries.top_calls).
        Index("ix_llm_calls_feature", "feature", "cost_usd", "created_at"),
        Index("ix_llm_calls_user", "user", "cost_usd", "created_at"),
        Index("ix_llm_calls_model", "model", "cost_usd", "created_at"),
        Index("ix_llm_calls_status", "status", "cost_usd", "created_at"),
        # Usage dashboard (migration 0003): covering index for range aggregates; on SQLite the
        # included columns are key columns, as SQLite has no INCLUDE.
        Index(
            "ix_llm_calls_usage",
            "created_at",
            postgresql_include=[
                "feature",
                "user",
                "model",
                "provider",
                "status",
                "template_name",
                "template_version",
                "error_type",
                "cost_usd",
                "prompt_tokens",
                "completion_tokens",
                "cached_tokens",
                "latency_ms",
            ],
        ),
        Index("ix_llm_calls_cost", "cost_usd", "created_at"),
        Index("ix_llm_calls_latency", "latency_ms", "created_at"),
        Index("ix_llm_calls_created_latency", "created_at", "latency_ms"),
        Index("ix_llm_calls_experiment_id", "experiment_id"),
    )


class PriceOverride(Base):
    """A custom price that overrides the shipped table for one model from a date on."""

    __tablename__ = "prices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    input_per_mtok: Mapped[float] = mapped_column(Float, nullable=False)
    cached_input_per_mtok: Mapped[float | None] = mapped_column(Float)
    output_per_mtok: Mapped[float] = mapped_column(Float, nullable=False)
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(255))


# ---- documents and grounded chat ----------------------------------------------------------------


class Collection(Base):
    """A named set of documents searched together; its chunks live in one Chroma collection."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    chroma_name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    embedding_model: Mapped[str] = mapped_column(String(255), nullable=False)  # vectors of one model only
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Document(Base):
    """One uploaded file; `version` grows when its content changes, chunks carry the version in Chroma."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(512), nullable=False)
    content_hash: Mapped[str | None] = mapped_column(String(64))  # of the indexed version
    version: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # 0 = never indexed
    pages: Mapped[int | None] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued, indexing, indexed, failed
    error: Mapped[str | None] = mapped_column(Text)
    flagged_chunks: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    original_path: Mapped[str | None] = mapped_column(String(1024))
    uploaded_by: Mapped[str | None] = mapped_column(String(255))  # Identity.owner; None (older rows): admins only
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("collection_id", "name", name="uq_documents_collection_name"),)


class IngestJob(Base):
    """An indexing job: one upload of one or more files, run off the page's script run."""

    __tablename__ = "ingest_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), nullable=False)
    user: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued, running, done, failed
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)  # per-file progress
    owner: Mapped[str | None] = mapped_column(String(128))  # host:pid of the process running it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChatSession(Base):
    """A saved conversation."""

    __tablename__ = "chat_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str | None] = mapped_column(String(255), index=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    collection: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class ChatMessage(Base):
    """One turn of a conversation; an answer keeps the sources it was given and its call's request id."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    sources: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    summary: Mapped[str | None] = mapped_column(String(512))
    offline: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Feedback(Base):
    """👍/👎 with an optional comment on one answer."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("chat_messages.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    rating: Mapped[int] = mapped_column(Integer, nullable=False)  # +1 or -1
    comment: Mapped[str | None] = mapped_column(Text)
    user: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class PromptTemplate(Base):
    """A named prompt; its content lives in immutable versions."""

    __tablename__ = "prompt_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)  # of the newest version
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(255))


class TemplateVersion(Base):
    """One saved version of a template; never updated (see the guard below)."""

    __tablename__ = "template_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("prompt_templates.id", ondelete="CASCADE"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    author: Mapped[str | None] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (UniqueConstraint("template_id", "version", name="uq_template_versions_version"),)


@event.listens_for(TemplateVersion, "before_update")
def _versions_are_immutable(_mapper, _conn, target) -> None:
    raise ValueError(f"Template versions are immutable (tried to change v{target.version}); save a new one.")


class TemplateLabel(Base):
    """A label (production, staging, …) pointing at one version of a template."""

    __tablename__ = "template_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("prompt_templates.id", ondelete="CASCADE"), nullable=False)
    label: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("template_id", "label", name="uq_template_labels_label"),)


class LabelMove(Base):
    """History of labels: who pointed which label from which version to which, and when."""

    __tablename__ = "label_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("prompt_templates.id", ondelete="CASCADE"), nullable=False, index=True
    )
    label: Mapped[str] = mapped_column(String(64), nullable=False)
    from_version: Mapped[int | None] = mapped_column(Integer)  # None: the label was created
    to_version: Mapped[int] = mapped_column(Integer, nullable=False)
    moved_by: Mapped[str | None] = mapped_column(String(255))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)


# ---- cost control --------------------------------------------------------------------------------


class CachedResponse(Base):
    """A stored answer for an exact request (model, parameters, messages); served until it expires."""

    __tablename__ = "response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    response: Mapped[str] = mapped_column(Text, nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class Budget(Base):
    """A monthly limit in money and/or tokens for a user, a feature, or everything (scope 'global')."""

    __tablename__ = "budgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16), nullable=False)  # global, user, feature
    subject: Mapped[str] = mapped_column(String(255), nullable=False)  # "*" for global
    limit_usd: Mapped[float | None] = mapped_column(Float)
    limit_tokens: Mapped[int | None] = mapped_column(Integer)
    soft_ratio: Mapped[float] = mapped_column(Float, default=0.8, nullable=False)
    degrade_model: Mapped[str | None] = mapped_column(String(255))  # used past the soft limit
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (UniqueConstraint("scope", "subject", name="uq_budgets_scope_subject"),)


class BudgetCounter(Base):
    """One budget's spend and in-flight reservations for one month, shared by every process.

    Calls reserve their worst-case cost here with a conditional UPDATE (spent + reserved + cost <= limit), so the
    hard limit holds however many app processes share the database.
    """

    __tablename__ = "budget_counters"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-11": budgets are monthly
    spent_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    reserved_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)


class BudgetReservation(Base):
    """What one call in flight holds on one budget counter, until it settles or (its process gone) expires."""

    __tablename__ = "budget_reservations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # one id per call, shared by its budgets
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    usd: Mapped[float] = mapped_column(Float, nullable=False)
    tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


# ---- compare: test sets, batch runs, votes, live experiments ------------------------------------


class TestSet(Base):
    """Named inputs for a template: one row per case, columns are the template's variables."""

    __tablename__ = "test_sets"
    __test__ = False  # not a pytest class, despite the name

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    variables: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class TestCase(Base):
    """One input of a test set, with an optional expected answer and where it came from."""

    __tablename__ = "test_cases"
    __test__ = False

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_set_id: Mapped[int] = mapped_column(ForeignKey("test_sets.id", ondelete="CASCADE"), nullable=False, index=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    expected: Mapped[str | None] = mapped_column(Text)
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # e.g. {"message_id": 12} from a 👎 in Chat
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class CompareRun(Base):
    """A batch run of variants A and B over a test set; its rows are RunResults."""

    __tablename__ = "compare_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_set_id: Mapped[int | None] = mapped_column(ForeignKey("test_sets.id", ondelete="SET NULL"))
    template_name: Mapped[str] = mapped_column(String(128), nullable=False)
    variant_a: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # {"version": 1, "model": "…"}
    variant_b: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # regex, min/max length, judge model
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # running, done, cancelled, failed
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RunResult(Base):
    """One variant's answer to one case of a batch run, with its automatic checks."""

    __tablename__ = "run_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("compare_runs.id", ondelete="CASCADE"), nullable=False, index=True)
    case_id: Mapped[int] = mapped_column(Integer, nullable=False)
    variant: Mapped[str] = mapped_column(String(1), nullable=False)  # A or B
    text: Mapped[str] = mapped_column(Text, default="", nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # ok, invalid, error
    error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    checks: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # name -> True/False

    __table_args__ = (UniqueConstraint("run_id", "case_id", "variant", name="uq_run_results_row"),)


class CompareVote(Base):
    """A verdict on A vs B for one input: a person's vote or the LLM judge's; stored with both variants."""

    __tablename__ = "compare_votes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("compare_runs.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int | None] = mapped_column(Integer)
    template_name: Mapped[str] = mapped_column(String(128), nullable=False)
    variant_a: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    variant_b: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    answer_a: Mapped[str | None] = mapped_column(Text)
    answer_b: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16), nullable=False)  # A, B, tie, both_bad
    voter: Mapped[str] = mapped_column(String(16), nullable=False)  # human, judge
    blind: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)
    user: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Experiment(Base):
    """A live A/B split of one template's traffic between two versions, sticky per user."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    template_name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    version_a: Mapped[int] = mapped_column(Integer, nullable=False)
    version_b: Mapped[int] = mapped_column(Integer, nullable=False)
    share_b: Mapped[float] = mapped_column(Float, nullable=False)  # 0..1 of users who get B
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # active, stopped
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---- background jobs (lib.jobs) ----------------------------------------------------------------------


class JobItem(Base):
    """One unit of queued work (a file of an indexing job, a case of a batch run): its state, worker and progress.

    The queue carries only this row's id; the row decides who runs it (a conditional claim), shows its progress
    to every process, and its heartbeat tells a live worker from a dead one.
    """

    __tablename__ = "job_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)  # index, compare, …
    job_id: Mapped[int] = mapped_column(Integer, nullable=False)  # ingest_jobs.id or compare_runs.id, by kind
    position: Mapped[int] = mapped_column(Integer, nullable=False)  # file index, or test case id
    name: Mapped[str] = mapped_column(String(512), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued, running, done, failed, cancelled
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # kind-specific detail
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))  # host:pid running it (or that last ran it)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_job_items_job", "kind", "job_id"),
        Index("ix_job_items_status", "status"),
    )


class JobBlob(Base):
    """The bytes a queued item needs (an uploaded file), in the shared database so any worker can read them."""

    __tablename__ = "job_blobs"

    item_id: Mapped[int] = mapped_column(ForeignKey("job_items.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class ProviderSlot(Base):
    """One of a provider's in-flight slots for queued work; held by a worker until released or expired."""

    __tablename__ = "provider_slots"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(160))  # host:pid:thread
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProviderWindow(Base):
    """Requests started to a provider by queued work in one minute (a fixed-window rate limit)."""

    __tablename__ = "provider_windows"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Unix minute
    count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class PipelineRecord(Base):
    """A pipeline by name; its content lives in immutable versions."""

    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class PipelineVersion(Base):
    """One immutable version of a pipeline: its steps as JSON."""

    __tablename__ = "pipeline_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    author: Mapped[str | None] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (UniqueConstraint("pipeline_id", "version", name="uq_pipeline_version"),)


class PipelineLabel(Base):
    """A label (production, staging…) pointing at one version of a pipeline."""

    __tablename__ = "pipeline_labels"

    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    moved_by: Mapped[str | None] = mapped_column(String(255))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class PipelineRun(Base):
    """A run of one pipeline version over many rows; its rows are job items of kind `pipeline`."""

    __tablename__ = "pipeline_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline_name: Mapped[str] = mapped_column(String(80), nullable=False)
    pipeline_version: Mapped[int] = mapped_column(Integer, nullable=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # the version's steps, as run
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # queued, running, paused_budget, done, …
    total_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    budget_usd: Mapped[float | None] = mapped_column(Float)  # hard cap: the run pauses before crossing it
    spent_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)  # settled cost of its calls
    reserved_usd: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)  # calls in flight, predicted
    concurrency: Mapped[int | None] = mapped_column(Integer)  # rows at a time across workers (None: the queue's)
    source: Mapped[str] = mapped_column(String(255), default="", nullable=False)  # file name or test set
    note: Mapped[str | None] = mapped_column(Text)  # why it paused or failed
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PipelineRow(Base):
    """One input row of a run and where it stands (pending, completed, failed at a step, in review, rejected)."""

    __tablename__ = "pipeline_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    step: Mapped[str | None] = mapped_column(String(32))  # the step it failed, waits or stopped at
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("run_id", "position", name="uq_pipeline_row"),
        Index("ix_pipeline_rows_status", "run_id", "status"),
    )


class PipelineStepResult(Base):
    """A row's result at one step; (run, row, step) is unique, so a completed step is never run again."""

    __tablename__ = "pipeline_step_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    step: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # ok, skipped, passed, approved, edited, rejected
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    tokens: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    request_ids: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    decided_by: Mapped[str | None] = mapped_column(String(255))  # gates: the reviewer (or "timeout")
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (UniqueConstraint("run_id", "position", "step", name="uq_pipeline_step_result"),)


class PipelineReview(Base):
    """A row waiting at a gate (or decided there): the review queue."""

    __tablename__ = "pipeline_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    step: Mapped[str] = mapped_column(String(32), nullable=False)  # the gate
    pipeline_name: Mapped[str] = mapped_column(String(80), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # waiting, approved, edited, rejected
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the gate's timeout
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
    edited_output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("run_id", "position", "step", name="uq_pipeline_review"),
        Index("ix_pipeline_reviews_status", "status", "created_at"),
    )


# ---- the assistant (migration 0012) ------------------------------------------------------------------------------


class AssistantTurnRow(Base):
    """One assistant turn: the question, how it ended (and which guard stopped it), the answer."""

    __tablename__ = "assistant_turns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the call log's run_id for its model calls
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    user: Mapped[str | None] = mapped_column(String(255))
    roles: Mapped[str] = mapped_column(String(255), nullable=False)  # comma-separated
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    question: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # running, paused, done, stopped, error
    guard: Mapped[str | None] = mapped_column(String(32))  # step_cap, cost_cap, loop
    guard_message: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[int] = mapped_column(Integer, default=0, nullable=False)

    __table_args__ = (Index("ix_assistant_turns_created_at", "created_at"),)


class AssistantToolCall(Base):
    """One tool call of an assistant turn, whatever its outcome: enough to replay the turn and audit it."""

    __tablename__ = "assistant_tool_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    turn_id: Mapped[str] = mapped_column(String(64), nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    call_id: Mapped[str | None] = mapped_column(String(128))
    tool: Mapped[str] = mapped_column(String(64), nullable=False)
    arguments: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # ok, error, denied, refused
    decision: Mapped[str] = mapped_column(String(16), nullable=False)  # auto, approved, edited, denied, off
    result_chars: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    result_preview: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    user: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_assistant_tool_calls_turn", "turn_id", "step"),
        Index("ix_assistant_tool_calls_created_at", "created_at"),
    )


class AssistantPolicy(Base):
    """A tool's policy for a role (auto, confirm or off); tools and roles without a row use the shipped default."""

    __tablename__ = "assistant_policies"

    tool: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(255))
