"""Settings: one frozen object built from the environment and (optionally) Streamlit secrets."""

from __future__ import annotations

import getpass
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lib.core.identity import ROLES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OFFLINE_MODEL = "offline/extractive"
LOG_CONTENT_MODES = ("full", "redacted", "none")
UNPRICED_POLICIES = ("block", "tokens")
# countries whose national phone formats redaction recognises: the US, the UK and the main EU countries
DEFAULT_PII_REGIONS = ("US", "GB", "DE", "FR", "NL", "ES", "IT", "BE", "AT", "CH", "IE", "PT", "PL", "SE", "DK", "FI")


class ConfigError(ValueError):
    """A setting is malformed; the message says which one and how to fix it."""


@dataclass(frozen=True)
class ProviderConfig:
    """One model provider: OpenAI, an OpenAI-compatible endpoint, or the offline answerer."""

    name: str  # used as the prefix of model names: "<name>/<model>"
    kind: str  # "openai", "openai_compatible" or "offline"
    base_url: str | None = None  # None means the OpenAI default
    api_key: str | None = field(default=None, repr=False)  # never printed
    timeout_s: float = 60.0  # per request
    models: tuple[str, ...] = ()  # models offered in the UI
    default_model: str | None = None  # the provider's model when none is named
    external: bool = True  # data leaves this machine: personal data is replaced before sending

    def model_names(self) -> list[str]:
        """Full `provider/model` names this provider offers."""
        return [f"{self.name}/{m}" for m in self.models]


OTLP_PROTOCOLS = ("http/protobuf", "grpc")
TRACE_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
TRACE_CONTENT_MODES = ("none", "redacted")


@dataclass(frozen=True)
class TraceConfig:
    """OpenTelemetry trace export, from the standard OTEL_* variables (present only when an endpoint is set)."""

    endpoint: str  # OTLP collector: base URL for http/protobuf (/v1/traces is added), host:port URL for gRPC
    protocol: str = "http/protobuf"  # or "grpc"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # e.g. Authorization for Langfuse
    service_name: str = "ai-workbench"
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    sampler: str = "parentbased_always_on"
    sampler_arg: float | None = None  # the ratio of the traceidratio samplers


@dataclass(frozen=True)
class Settings:
    """Everything configurable about the workbench; see README for the variables."""

    data_dir: Path  # runtime state: database, Chroma, caches (WORKBENCH_DATA_DIR)
    database_url: str  # SQLAlchemy URL (DATABASE_URL); SQLite in data_dir by default
    chroma_path: Path  # embedded Chroma location
    chroma_host: str | None  # Chroma server host (CHROMA_HOST); None means embedded
    chroma_port: int  # Chroma server port (CHROMA_PORT)
    providers: tuple[ProviderConfig, ...]  # configured providers, offline always last
    default_model: str  # the model used when a feature names none
    fallback_models: Mapping[str, str]  # feature -> model tried when the primary fails
    log_content: str  # prompts/responses in the call log: full, redacted or none
    history_token_budget: int  # chat history sent to the model is trimmed to this
    max_retries: int  # retries on 429, 5xx, timeouts and dropped connections
    backoff_base_s: float  # first retry delay; doubles each attempt, with jitter
    backoff_max_s: float  # cap on one retry delay (and on an honoured Retry-After)
    breaker_threshold: int  # consecutive failures that open a provider's circuit
    breaker_cooldown_s: float  # how long an open circuit fails fast
    demo: bool = False  # the data dir holds synthetic demo data
    chunk_size: int = 800  # characters per chunk (measured: bench/retrieval_quality.py)
    chunk_overlap: int = 120  # characters shared by neighbouring chunks
    top_k: int = 5  # chunks given to the answer
    search_mode: str = "hybrid"  # hybrid, vector or bm25
    hybrid_weight: float = 0.5  # weight of the vector ranking in hybrid fusion (BM25 gets the rest)
    max_file_mb: float = 50  # larger uploads are refused
    ocr: bool = True  # PDF pages without a text layer are read by OCR (when Tesseract is installed)
    ocr_languages: str = "eng+deu+fra+spa+ita+nld"  # Tesseract languages tried together; missing ones are skipped
    ocr_max_pages: int = 100  # a PDF with more pages to OCR is refused before any is read
    ocr_timeout_s: int = 900  # OCR of one document fails after this many seconds
    title_headers: bool = True  # chunks are embedded and indexed with their document's title in front
    cache_features: frozenset[str] = frozenset({"chat", "compare"})  # features whose answers are cached
    cache_ttl_s: float = 24 * 3600  # how long a cached answer is served
    max_input_tokens: Mapping[str, int] = field(default_factory=dict)  # feature -> prompt cap (history trimmed)
    max_output_tokens: Mapping[str, int] = field(default_factory=dict)  # feature -> answer cap
    redact_external: bool = True  # replace personal data before prompts go to external providers
    pii_regions: tuple[str, ...] = DEFAULT_PII_REGIONS  # countries whose national phone formats are redacted
    role_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # email or @domain -> roles
    embedding_model: str = "local/all-MiniLM-L6-v2"  # or provider/model of an OpenAI-compatible endpoint
    preload_embeddings: bool = True  # app processes load the local embedding model in the background at start
    require_verified_email: bool = True  # roles only for emails the identity provider marks verified
    local_user: str = "local"  # the one user while sign-in is off (WORKBENCH_USER, else the OS user)
    max_prompt_chars: int = 200_000  # one call may send at most this many characters of messages
    unpriced_policy: str = "block"  # models without a price under a dollar budget: "block", or "tokens" (count $0)
    cache_shared_features: frozenset[str] = frozenset()  # features whose cached answers are shared between users
    queue_url: str | None = None  # Redis URL of the job queue (WORKBENCH_QUEUE_URL); None: SQLite in data_dir
    app_workers: int = 4  # worker threads an app process runs for the queue; 0: only `lib.cli worker` processes work
    job_heartbeat_s: float = 10.0  # a worker marks its items alive this often; silent for 3x as long: re-queued
    provider_limits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # provider -> concurrency, rpm
    log_retention_days: int | None = None  # call-log rows older than this are deleted (None: kept forever)
    assistant_max_steps: int = 8  # model calls one assistant turn may make before the step cap stops it
    assistant_max_cost_usd: float | None = 0.5  # spend one assistant turn may reach before the cost cap stops it
    tracing: TraceConfig | None = None  # OTLP trace export (OTEL_* variables); None: no tracing, no cost
    trace_url: str | None = None  # link pattern with {trace_id} to a trace in Jaeger/Tempo (WORKBENCH_TRACE_URL)
    trace_content: str = "none"  # prompt/answer text in spans: none, or redacted (PII masked first)
    metrics_port: int | None = None  # Prometheus metrics served on this port (WORKBENCH_METRICS_PORT); None: off
    metrics_addr: str = "0.0.0.0"  # the address the metrics port listens on (WORKBENCH_METRICS_ADDR)

    def provider(self, name: str) -> ProviderConfig:
        """The provider called `name`, or ConfigError."""
        for p in self.providers:
            if p.name == name:
                return p
        raise ConfigError(f"No provider named {name!r} is configured.")

    def model_names(self) -> list[str]:
        """Every `provider/model` the UI may offer, default first."""
        names = [n for p in self.providers for n in p.model_names()]
        if self.default_model in names:
            names.remove(self.default_model)
        return [self.default_model, *names]


def _bool(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _json_map(raw: Any, name: str, convert: Any) -> dict[str, Any]:
    try:
        data = json.loads(raw) if isinstance(raw, str) else dict(raw)
        return {str(k): convert(v) for k, v in data.items()}
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f'{name} must be a JSON object, e.g. {{"chat": 4000}}: {exc}') from exc


def _positive_int(raw: Any, name: str) -> int:
    try:
        value = int(str(raw).replace("_", "").replace(",", ""))
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, e.g. 200000; got {raw!r}.") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be above 0; got {value}.")
    return value


def _role_map(raw: Any) -> dict[str, tuple[str, ...]]:
    """WORKBENCH_ROLES, checked whole: a typo must stop the app, never grant or drop a role quietly."""
    example = 'e.g. {"ada@example.com": ["admin"], "@example.com": ["staff"]}'
    data = _json_map(raw, "WORKBENCH_ROLES", lambda v: [v] if isinstance(v, str) else v)
    out = {}
    for who, granted in data.items():
        if who != "*" and "@" not in who:
            raise ConfigError(f"WORKBENCH_ROLES: {who!r} is not an email, an @domain or '*'; {example}.")
        if not isinstance(granted, list) or not all(isinstance(r, str) for r in granted):
            raise ConfigError(f"WORKBENCH_ROLES: the roles of {who!r} must be a list of names; {example}.")
        unknown = [r for r in granted if r not in ROLES]
        if unknown:
            raise ConfigError(
                f"WORKBENCH_ROLES: {', '.join(map(repr, unknown))} for {who!r} is not a role; roles are "
                f"{', '.join(ROLES)}."
            )
        out[who] = tuple(granted)
    return out


def _provider_limits(raw: Any) -> dict[str, dict[str, int]]:
    """WORKBENCH_PROVIDER_LIMITS: {"openai": {"concurrency": 4, "rpm": 500}}, checked whole."""
    example = 'e.g. {"openai": {"concurrency": 4, "rpm": 500}}'
    out = {}
    for provider, limits in _json_map(raw, "WORKBENCH_PROVIDER_LIMITS", lambda v: v).items():
        if not isinstance(limits, dict) or not set(limits) <= {"concurrency", "rpm"}:
            raise ConfigError(f"WORKBENCH_PROVIDER_LIMITS: {provider!r} takes concurrency and/or rpm; {example}.")
        out[provider] = {k: _positive_int(v, f"WORKBENCH_PROVIDER_LIMITS {provider}.{k}") for k, v in limits.items()}
    return out


def _port(raw: Any, name: str) -> int | None:
    """A TCP port from `raw`, None when empty; ConfigError when it is not one."""
    if not str(raw or "").strip():
        return None
    try:
        port = int(str(raw).strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be a port number such as 9464; got {raw!r}.") from exc
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name} must be a port number from 1 to 65535; got {port}.")
    return port


def _cost_cap(raw: Any) -> float | None:
    """WORKBENCH_ASSISTANT_MAX_COST_USD: dollars (> 0), or "off"."""
    text = str(raw).strip().lower()
    if text in ("off", "none", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f'WORKBENCH_ASSISTANT_MAX_COST_USD must be dollars above 0 (like 0.5) or "off", not {raw!r}.')
    return value


def _pii_regions(raw: Any) -> tuple[str, ...]:
    """WORKBENCH_PII_REGIONS: comma-separated ISO country codes libphonenumber knows, checked whole."""
    import phonenumbers  # only here: the settings module stays light to import

    regions = tuple(dict.fromkeys(r.strip().upper() for r in str(raw).split(",") if r.strip()))
    unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
    if not regions or unknown:
        raise ConfigError(
            f"WORKBENCH_PII_REGIONS must list country codes such as US,GB,DE,FR; {unknown or raw!r} is not one."
        )
    return regions


def check_secrets_files(paths: Sequence[str | Path]) -> None:
    """ConfigError if a secrets file exists but cannot be read or parsed (never read as "no secrets")."""
    for path in map(Path, paths):
        if not path.is_file():
            continue  # absent (or a secrets directory, which Streamlit reads itself)
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"{path} cannot be read ({exc}). Fix or remove it: the workbench does not start with settings "
                "it cannot read, because that could switch sign-in or limits off."
            ) from exc


def _provider_from_mapping(name: str, raw: Mapping[str, Any]) -> ProviderConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"Provider {name!r} must be a table of settings, got {type(raw).__name__}.")
    kind = str(raw.get("kind", "openai_compatible"))
    if kind not in {"openai", "openai_compatible"}:
        raise ConfigError(f"Provider {name!r}: kind must be 'openai' or 'openai_compatible', not {kind!r}.")
    base_url = raw.get("base_url")
    if kind == "openai_compatible" and not base_url:
        raise ConfigError(f"Provider {name!r} needs a base_url, e.g. http://localhost:11434/v1 for Ollama.")
    models = raw.get("models") or ([raw["default_model"]] if raw.get("default_model") else [])
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not models:
        raise ConfigError(f'Provider {name!r} lists no models; set models = ["..."].')
    try:
        timeout = float(raw.get("timeout_s", 60))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Provider {name!r}: timeout_s must be a number of seconds.") from exc
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=str(base_url) if base_url else None,
        api_key=str(raw["api_key"]) if raw.get("api_key") else None,
        timeout_s=timeout,
        models=tuple(str(m) for m in models),
        default_model=str(raw.get("default_model") or models[0]),
        external=_bool(raw.get("external", kind == "openai")),
    )


def _load_providers(env: Mapping[str, str], secrets: Mapping[str, Any]) -> list[ProviderConfig]:
    raw: dict[str, Any] = {}
    if "providers" in secrets:
        raw.update({k: dict(v) for k, v in dict(secrets["providers"]).items()})
    if env.get("WORKBENCH_PROVIDERS"):
        try:
            raw.update(json.loads(env["WORKBENCH_PROVIDERS"]))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"WORKBENCH_PROVIDERS is not valid JSON: {exc.msg} at {exc.pos}.") from exc
    key = env.get("OPENAI_API_KEY") or secrets.get("OPENAI_API_KEY")
    if key and "openai" not in raw:
        raw["openai"] = {
            "kind": "openai",
            "models": ["gpt-4.1-mini", "gpt-4.1", "gpt-4o-mini", "gpt-4o"],
            "default_model": "gpt-4.1-mini",
        }
    if "openai" in raw and key and not raw["openai"].get("api_key"):
        raw["openai"]["api_key"] = key
    if "offline" in raw:
        raise ConfigError("'offline' is reserved for the built-in offline answerer; rename that provider.")
    providers = [_provider_from_mapping(n, v) for n, v in raw.items()]
    providers.append(
        ProviderConfig(
            name="offline",
            kind="offline",
            timeout_s=30,
            models=("extractive",),
            default_model="extractive",
            external=False,
        )
    )
    return providers


def _key_values(raw: str, name: str) -> dict[str, str]:
    """`k1=v1,k2=v2` (values URL-encoded, as the OTEL_* variables write them) as a dict; ConfigError if malformed."""
    out: dict[str, str] = {}
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name} must look like key1=value1,key2=value2; {item[:40]!r} has no key=value.")
        out[unquote(key.strip())] = unquote(value.strip())
    return out


def _trace_config(get: Any) -> TraceConfig | None:
    """Trace export from the standard OTEL_* variables: None unless an OTLP endpoint is set (or the SDK is off)."""
    if _bool(get("OTEL_SDK_DISABLED", False)) or str(get("OTEL_TRACES_EXPORTER", "otlp")).strip().lower() == "none":
        return None
    endpoint = str(get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "").strip()
    protocol_name = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" if get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") else ""
    protocol = str(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    protocol_name = protocol_name or "OTEL_EXPORTER_OTLP_PROTOCOL"
    if not endpoint:
        base = str(get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
        if not base:
            return None
        # the signal path is added to the general endpoint for HTTP, as the specification says; gRPC takes it as is
        endpoint = base.rstrip("/") + "/v1/traces" if protocol.strip() == "http/protobuf" else base
    exporter = str(get("OTEL_TRACES_EXPORTER", "otlp")).strip().lower()
    if exporter != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER must be otlp or none, not {exporter!r}.")
    protocol = protocol.strip()
    if protocol not in OTLP_PROTOCOLS:
        raise ConfigError(f"{protocol_name} must be one of {OTLP_PROTOCOLS}, not {protocol!r}.")
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"The OTLP endpoint must be an http:// or https:// URL, not {endpoint!r}.")
    sampler = str(get("OTEL_TRACES_SAMPLER", "parentbased_always_on")).strip().lower()
    if sampler not in TRACE_SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER must be one of {TRACE_SAMPLERS}, not {sampler!r}.")
    raw_arg = str(get("OTEL_TRACES_SAMPLER_ARG", "")).strip()
    sampler_arg = None
    if raw_arg:
        try:
            sampler_arg = float(raw_arg)
        except ValueError:
            sampler_arg = -1.0
        if not 0.0 <= sampler_arg <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, not {raw_arg!r}.")
    headers = {
        **_key_values(str(get("OTEL_EXPORTER_OTLP_HEADERS", "")), "OTEL_EXPORTER_OTLP_HEADERS"),
        **_key_values(str(get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")), "OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
    }
    attributes = _key_values(str(get("OTEL_RESOURCE_ATTRIBUTES", "")), "OTEL_RESOURCE_ATTRIBUTES")
    service = str(get("OTEL_SERVICE_NAME") or attributes.get("service.name") or "ai-workbench").strip()
    return TraceConfig(endpoint, protocol, headers, service, attributes, sampler, sampler_arg)


def _trace_url(raw: Any) -> str | None:
    """WORKBENCH_TRACE_URL: an http(s) URL pattern holding {trace_id}, or None."""
    url = str(raw or "").strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")) or "{trace_id}" not in url:
        raise ConfigError(
            "WORKBENCH_TRACE_URL must be an http:// or https:// URL with {trace_id} in it, e.g. "
            "http://jaeger:16686/trace/{trace_id}."
        )
    try:
        url.format(trace_id="0" * 32)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError("WORKBENCH_TRACE_URL may hold no braces but {trace_id}.") from exc
    return url


def load_settings(env: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from environment variables (and Streamlit secrets, which env overrides)."""
    env = os.environ if env is None else env
    secrets = secrets or {}

    def get(name: str, default: Any = None) -> Any:
        if name in env:
            return env[name]
        return secrets.get(name, default)

    data_dir = Path(get("WORKBENCH_DATA_DIR", PROJECT_ROOT / "data" / "runtime")).expanduser().resolve()
    providers = _load_providers(env, secrets)
    names = [n for p in providers for n in p.model_names()]
    non_offline = [p for p in providers if p.kind != "offline"]
    default_model = get("WORKBENCH_DEFAULT_MODEL") or (
        f"{non_offline[0].name}/{non_offline[0].default_model}" if non_offline else OFFLINE_MODEL
    )
    if default_model not in names:
        raise ConfigError(f"WORKBENCH_DEFAULT_MODEL={default_model!r} is not one of the configured models: {names}.")
    fallbacks = get("WORKBENCH_FALLBACKS", "{}")
    try:
        fallback_models = json.loads(fallbacks) if isinstance(fallbacks, str) else dict(fallbacks)
    except json.JSONDecodeError as exc:
        raise ConfigError('WORKBENCH_FALLBACKS must be JSON like {"chat": "offline/extractive"}.') from exc
    unpriced_policy = str(get("WORKBENCH_UNPRICED_POLICY", "block")).strip().lower()
    if unpriced_policy not in UNPRICED_POLICIES:
        raise ConfigError(f"WORKBENCH_UNPRICED_POLICY must be one of {UNPRICED_POLICIES}, not {unpriced_policy!r}.")
    queue_url = str(get("WORKBENCH_QUEUE_URL") or "").strip() or None
    if queue_url and not queue_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"WORKBENCH_QUEUE_URL must be a Redis URL like redis://queue-host:6379/0, not {queue_url!r}.")
    retention = get("WORKBENCH_LOG_RETENTION_DAYS", "")
    log_content = str(get("WORKBENCH_LOG_CONTENT", "redacted"))
    trace_content = str(get("WORKBENCH_TRACE_CONTENT", "none")).strip().lower()
    if trace_content not in TRACE_CONTENT_MODES:
        raise ConfigError(f"WORKBENCH_TRACE_CONTENT must be one of {TRACE_CONTENT_MODES}, not {trace_content!r}.")
    tracing, trace_url = _trace_config(get), _trace_url(get("WORKBENCH_TRACE_URL"))
    if log_content not in LOG_CONTENT_MODES:
        raise ConfigError(f"WORKBENCH_LOG_CONTENT must be one of {LOG_CONTENT_MODES}, not {log_content!r}.")
    try:
        return Settings(
            data_dir=data_dir,
            database_url=str(get("DATABASE_URL") or f"sqlite:///{data_dir / 'workbench.db'}"),
            chroma_path=data_dir / "chroma",
            chroma_host=get("CHROMA_HOST") or None,
            chroma_port=int(get("CHROMA_PORT", 8000)),
            providers=tuple(providers),
            default_model=default_model,
            fallback_models=dict(fallback_models),
            log_content=log_content,
            history_token_budget=int(get("WORKBENCH_HISTORY_TOKENS", 3000)),
            max_retries=int(get("WORKBENCH_MAX_RETRIES", 3)),
            backoff_base_s=float(get("WORKBENCH_BACKOFF_BASE_S", 0.5)),
            backoff_max_s=float(get("WORKBENCH_BACKOFF_MAX_S", 20)),
            breaker_threshold=int(get("WORKBENCH_BREAKER_THRESHOLD", 5)),
            breaker_cooldown_s=float(get("WORKBENCH_BREAKER_COOLDOWN_S", 30)),
            demo=_bool(get("WORKBENCH_DEMO", False)),
            chunk_size=int(get("WORKBENCH_CHUNK_SIZE", 800)),
            chunk_overlap=int(get("WORKBENCH_CHUNK_OVERLAP", 120)),
            top_k=int(get("WORKBENCH_TOP_K", 5)),
            search_mode=str(get("WORKBENCH_SEARCH_MODE", "hybrid")),
            hybrid_weight=float(get("WORKBENCH_HYBRID_WEIGHT", 0.5)),
            max_file_mb=float(get("WORKBENCH_MAX_FILE_MB", 50)),
            ocr=_bool(get("WORKBENCH_OCR", True)),
            ocr_languages=str(get("WORKBENCH_OCR_LANGUAGES", "eng+deu+fra+spa+ita+nld")),
            ocr_max_pages=_positive_int(get("WORKBENCH_OCR_MAX_PAGES", 100), "WORKBENCH_OCR_MAX_PAGES"),
            ocr_timeout_s=_positive_int(get("WORKBENCH_OCR_TIMEOUT_S", 900), "WORKBENCH_OCR_TIMEOUT_S"),
            title_headers=_bool(get("WORKBENCH_TITLE_HEADERS", True)),
            cache_features=frozenset(
                f.strip() for f in str(get("WORKBENCH_CACHE_FEATURES", "chat,compare")).split(",") if f.strip()
            ),
            cache_ttl_s=float(get("WORKBENCH_CACHE_TTL_S", 24 * 3600)),
            max_input_tokens=_json_map(get("WORKBENCH_MAX_INPUT_TOKENS", "{}"), "WORKBENCH_MAX_INPUT_TOKENS", int),
            max_output_tokens=_json_map(get("WORKBENCH_MAX_OUTPUT_TOKENS", "{}"), "WORKBENCH_MAX_OUTPUT_TOKENS", int),
            redact_external=_bool(get("WORKBENCH_REDACT_EXTERNAL", True)),
            pii_regions=_pii_regions(get("WORKBENCH_PII_REGIONS", ",".join(DEFAULT_PII_REGIONS))),
            role_map=_role_map(get("WORKBENCH_ROLES", "{}")),
            embedding_model=str(get("WORKBENCH_EMBEDDING_MODEL", "local/all-MiniLM-L6-v2")),
            preload_embeddings=_bool(get("WORKBENCH_PRELOAD_EMBEDDINGS", True)),
            require_verified_email=_bool(get("WORKBENCH_REQUIRE_VERIFIED_EMAIL", True)),
            local_user=str(get("WORKBENCH_USER") or getpass.getuser()),
            max_prompt_chars=_positive_int(get("WORKBENCH_MAX_PROMPT_CHARS", 200_000), "WORKBENCH_MAX_PROMPT_CHARS"),
            unpriced_policy=unpriced_policy,
            cache_shared_features=frozenset(
                f.strip() for f in str(get("WORKBENCH_CACHE_SHARED_FEATURES", "")).split(",") if f.strip()
            ),
            queue_url=queue_url,
            app_workers=int(get("WORKBENCH_APP_WORKERS", 0 if queue_url else 4)),
            job_heartbeat_s=float(get("WORKBENCH_JOB_HEARTBEAT_S", 10)),
            provider_limits=_provider_limits(get("WORKBENCH_PROVIDER_LIMITS", "{}")),
            log_retention_days=(
                _positive_int(retention, "WORKBENCH_LOG_RETENTION_DAYS") if str(retention).strip() else None
            ),
            assistant_max_steps=_positive_int(get("WORKBENCH_ASSISTANT_MAX_STEPS", 8), "WORKBENCH_ASSISTANT_MAX_STEPS"),
            assistant_max_cost_usd=_cost_cap(get("WORKBENCH_ASSISTANT_MAX_COST_USD", "0.5")),
            tracing=tracing,
            trace_url=trace_url,
            trace_content=trace_content,
            metrics_port=_port(get("WORKBENCH_METRICS_PORT"), "WORKBENCH_METRICS_PORT"),
            metrics_addr=str(get("WORKBENCH_METRICS_ADDR") or "0.0.0.0"),
        )
    except ValueError as exc:
        raise ConfigError(f"A numeric setting is malformed: {exc}") from exc
