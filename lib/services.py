"""Plain (non-Streamlit) construction of the shared services, for the command line and scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from lib.core.db import make_engine, migrate
from lib.core.settings import Settings
from lib.documents.embeddings import LOCAL_MODEL, CachedEmbeddings, LazyEmbeddings
from lib.documents.indexing import ChunkingSettings, Indexer
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.documents.vectorstore import make_chroma_client


@dataclass
class Services:
    """Engine, Chroma client, embeddings, indexer and retriever built from one Settings."""

    settings: Settings
    engine: Engine
    client: Any
    embeddings: CachedEmbeddings
    indexer: Indexer
    retriever: Retriever

    def retrieval(self, k: int | None = None, mode: str | None = None) -> RetrievalSettings:
        """Retrieval settings from the app settings, optionally overridden."""
        s = self.settings
        return RetrievalSettings(k=k or s.top_k, mode=mode or s.search_mode, vector_weight=s.hybrid_weight)


def chunking_from(settings: Settings) -> ChunkingSettings:
    """Chunking settings from the app settings."""
    return ChunkingSettings(
        settings.chunk_size, settings.chunk_overlap, int(settings.max_file_mb * 2**20), settings.title_headers
    )


def document_embeddings(
    settings: Settings, engine: Engine, local: Any | None = None, gateway: Any | None = None
) -> CachedEmbeddings:
    """The configured embedding model (local MiniLM, or a provider's through the gateway) behind the cache."""
    model = settings.embedding_model
    if model == LOCAL_MODEL:
        inner = local or LazyEmbeddings()
    else:
        from lib.gateway.client import Gateway, GatewayEmbeddings

        inner = GatewayEmbeddings(gateway or Gateway(settings, engine), model)
    return CachedEmbeddings(inner, model, settings.data_dir / "cache" / "embeddings.sqlite")


def build_services(settings: Settings, embeddings: Any | None = None) -> Services:
    """Everything the document features need, migrated and ready (`embeddings`: a local model to reuse)."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    client = make_chroma_client(settings)
    cached = document_embeddings(settings, engine, embeddings)
    model = settings.embedding_model
    indexer = Indexer(engine, client, cached, settings.data_dir / "originals", chunking_from(settings), model)
    return Services(settings, engine, client, cached, indexer, Retriever(engine, client, cached, model))
