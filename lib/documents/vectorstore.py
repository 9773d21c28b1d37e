"""Chroma: the embedded PersistentClient in the data dir, or a server via CHROMA_HOST."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

from lib.core.settings import Settings


def make_chroma_client(settings: Settings) -> Any:
    """One Chroma client per process: embedded by default, HTTP when CHROMA_HOST is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


def open_store(client: Any, chroma_name: str, embeddings: Embeddings):
    """A LangChain Chroma store over one collection (cosine), always with our embedding function."""
    from langchain_chroma import Chroma

    return Chroma(
        client=client,
        collection_name=chroma_name,
        embedding_function=embeddings,
        collection_configuration={"hnsw": {"space": "cosine"}},
    )


def get_all(store, include: list[str], page: int = 5000) -> dict[str, list]:
    """Every id (and the `include` fields) of a store, read in pages (one big read overflows SQLite)."""
    out: dict[str, list] = {"ids": [], **{k: [] for k in include}}
    offset = 0
    while True:
        part = store.get(include=include, limit=page, offset=offset)
        for key in out:
            out[key] += part[key] or []
        if len(part["ids"]) < page:
            return out
        offset += page
