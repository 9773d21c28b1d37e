"""Retrieval (vector, BM25, hybrid by rank fusion) of numbered, citable passages."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lib.core import spans
from lib.core.tables import Collection, Document
from lib.documents.bm25 import BM25Index
from lib.documents.citations import Source
from lib.documents.embeddings import LOCAL_MODEL
from lib.documents.indexing import check_embedding_model, get_collection
from lib.documents.vectorstore import get_all, open_store

MODES = ("hybrid", "vector", "bm25")
RRF_K = 60
FULL_READ_DOCS = 200  # changed documents above which one plain read of the collection is faster


@dataclass(frozen=True)
class RetrievalSettings:
    """Top-k, the search mode and the hybrid weight of the vector side (0..1)."""

    k: int = 5
    mode: str = "hybrid"
    vector_weight: float = 0.5
    candidates: int = 30  # per side, before fusion


@dataclass(frozen=True)
class _Bm25Entry:
    """A collection's BM25 index, its rows' chunks, and the document versions it was built from."""

    live: dict[int, tuple[int, Any, int]]  # document id -> (version, indexed_at, chunks) read completely
    index: BM25Index
    ids: list[str]
    docs: list[str]
    metas: list[dict]
    doc_ids: np.ndarray  # each row's document id


class Retriever:
    """Searches one collection at a time; keeps a BM25 index per collection, updated when it changes.

    The database says which document versions are live (other processes index and delete too); an update
    reads and tokenizes only the chunks of versions the index has not seen, and drops those of the others.
    """

    def __init__(self, engine: Engine, client: Any, embeddings: Embeddings, embedding_model: str = LOCAL_MODEL):
        self.engine, self.client, self.embeddings = engine, client, embeddings
        self.embedding_model = embedding_model
        self._bm25: dict[str, _Bm25Entry] = {}
        self._building: dict[str, threading.Lock] = {}
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()

    def store(self, chroma_name: str):
        """The LangChain Chroma store of a collection, opened once (opening costs ~35 ms)."""
        with self._lock:
            if chroma_name not in self._stores:
                self._stores[chroma_name] = open_store(self.client, chroma_name, self.embeddings)
            return self._stores[chroma_name]

    def _live_documents(self, col: Collection) -> dict[int, tuple[int, Any, int]]:
        # indexed_at tells a document re-created under a reused id (SQLite) from the one before it.
        with Session(self.engine) as s:
            rows = s.execute(
                select(Document.id, Document.version, Document.indexed_at, Document.chunks).where(
                    Document.collection_id == col.id, Document.version > 0
                )
            ).all()
        return {doc_id: (version, indexed_at, chunks) for doc_id, version, indexed_at, chunks in rows}

    def _bm25_for(self, col: Collection, live: dict[int, tuple[int, Any, int]]) -> _Bm25Entry:
        with self._lock:
            cached = self._bm25.get(col.chroma_name)
            building = self._building.setdefault(col.chroma_name, threading.Lock())
        if cached is not None and cached.live == live:
            return cached
        with building:  # one update at a time per collection; a waiting search then finds it done
            with self._lock:
                cached = self._bm25.get(col.chroma_name)
            if cached is not None and cached.live == live:
                return cached
            entry = self._update(self.store(col.chroma_name), cached, live)
            with self._lock:
                self._bm25[col.chroma_name] = entry
            return entry

    @staticmethod
    def _update(store, cached: _Bm25Entry | None, live: dict[int, tuple[int, Any, int]]) -> _Bm25Entry:
        seen_before = cached.live if cached is not None else {}
        changed = sorted(d for d in seen_before.keys() | live.keys() if seen_before.get(d) != live.get(d))
        if cached is None or sum(d in live for d in changed) > FULL_READ_DOCS:  # one plain read is faster then
            cached = _Bm25Entry({}, BM25Index([]), [], [], [], np.zeros(0, dtype=np.int64))
            changed = sorted(live)
            added = _of_versions(get_all(store, ["documents", "metadatas"]), {d: live[d][0] for d in changed})
        else:
            added = read_versions(store, {d: live[d][0] for d in changed if d in live})
        keep = ~np.isin(cached.doc_ids, np.asarray(changed, dtype=np.int64))
        rows = None if keep.all() else np.flatnonzero(keep)

        def kept(values: list) -> list:
            return list(values) if rows is None else [values[i] for i in rows]

        # A read that raced a deletion may miss chunks: such a document is not marked as seen, so the next
        # search reads it again (its rows are dropped first, never doubled).
        found = Counter(m["document_id"] for m in added["metadatas"])
        seen = {d: v for d, v in live.items() if d not in changed or found[d] >= v[2]}
        return _Bm25Entry(
            seen,
            cached.index.updated(keep, added["documents"]),
            kept(cached.ids) + added["ids"],
            kept(cached.docs) + added["documents"],
            kept(cached.metas) + added["metadatas"],
            np.concatenate(
                [cached.doc_ids[keep], np.asarray([m["document_id"] for m in added["metadatas"]], dtype=np.int64)]
            ),
        )

    def search(
        self,
        collection: str,
        query: str,
        settings: RetrievalSettings = RetrievalSettings(),
        query_vector: list[float] | None = None,
    ) -> list[Source]:
        """The k best chunks for `query`, numbered 1..k; chunks of superseded versions are never returned."""
        if settings.mode not in MODES:
            raise ValueError(f"Search mode must be one of {MODES}, not {settings.mode!r}.")
        with spans.span("retrieval.search", mode=settings.mode, k=settings.k) as current:
            found = self._search(collection, query, settings, query_vector)
            current.set_attribute("workbench.results", len(found))
            return found

    def _search(
        self, collection: str, query: str, settings: RetrievalSettings, query_vector: list[float] | None
    ) -> list[Source]:
        col = get_collection(self.engine, collection)
        check_embedding_model(col, self.embedding_model)
        live = self._live_documents(col)
        current = {doc_id: v[0] for doc_id, v in live.items()}
        n = max(settings.candidates, settings.k)
        ranked: dict[str, list[tuple[str, str, dict, float]]] = {}
        if settings.mode in ("vector", "hybrid"):
            with spans.span("retrieval.vector", candidates=n) as step:
                store = self.store(col.chroma_name)
                vector = query_vector or self.embeddings.embed_query(query)
                # Despite its name this returns Chroma's raw distance; the collections are cosine, so 1 - distance.
                hits = store.similarity_search_by_vector_with_relevance_scores(vector, k=n)
                ranked["vector"] = [(doc.id, doc.page_content, doc.metadata, 1 - dist) for doc, dist in hits]
                step.set_attribute("workbench.results", len(hits))
        if settings.mode in ("bm25", "hybrid"):
            with spans.span("retrieval.bm25", candidates=n) as step:
                bm25 = self._bm25_for(col, live)
                top = bm25.index.top(query, n)
                ranked["bm25"] = [(bm25.ids[i], bm25.docs[i], bm25.metas[i], s) for i, s in top]
                step.set_attribute("workbench.results", len(top))
        for side in ranked:
            ranked[side] = [r for r in ranked[side] if current.get(r[2]["document_id"]) == r[2]["version"]]
        if settings.mode == "hybrid":
            with spans.span("retrieval.fusion", vector_weight=settings.vector_weight):
                fused = fuse(ranked["vector"], ranked["bm25"], settings.vector_weight)
        else:
            fused = ranked[settings.mode]
        return [
            Source(
                number=i + 1,
                chunk_id=cid,
                document_id=int(meta["document_id"]),
                document=str(meta["document"]),
                page=int(meta["page"]) if int(meta.get("page", -1)) > 0 else None,
                chunk_index=int(meta["chunk_index"]),
                text=text[int(meta.get("header_len", 0)) :],
                score=round(float(score), 4),
                flagged=bool(meta.get("flagged", False)),
                ocr=bool(meta.get("ocr", False)),
            )
            for i, (cid, text, meta, score) in enumerate(fused[: settings.k])
        ]


def read_versions(store, versions: dict[int, int], batch: int = 100, page: int = 5000) -> dict[str, list]:
    """Ids, texts and metadata of the chunks of the given {document id: version}, read in pages.

    Filtering on the document id alone is ~7x faster in Chroma than on id and version; the version is checked here.
    """
    out: dict[str, list] = {"ids": [], "documents": [], "metadatas": []}
    doc_ids = list(versions)
    for start in range(0, len(doc_ids), batch):
        part_ids = doc_ids[start : start + batch]
        where = {"document_id": part_ids[0] if len(part_ids) == 1 else {"$in": part_ids}}
        offset = 0
        while True:
            part = store.get(where=where, include=["documents", "metadatas"], limit=page, offset=offset)
            for key, values in _of_versions(part, versions).items():
                out[key] += values
            if len(part["ids"]) < page:
                break
            offset += page
    return out


def _of_versions(raw: dict[str, list], versions: dict[int, int]) -> dict[str, list]:
    rows = [i for i, m in enumerate(raw["metadatas"]) if versions.get(m.get("document_id")) == m.get("version")]
    return {key: [raw[key][i] for i in rows] for key in ("ids", "documents", "metadatas")}


def fuse(vector: list, bm25: list, vector_weight: float) -> list:
    """Weighted reciprocal-rank fusion keyed by chunk id (same text in two documents stays two hits)."""
    scores: dict[str, float] = {}
    items: dict[str, tuple] = {}
    for weight, ranking in ((vector_weight, vector), (1 - vector_weight, bm25)):
        for rank, item in enumerate(ranking):
            scores[item[0]] = scores.get(item[0], 0.0) + weight / (RRF_K + rank + 1)
            items.setdefault(item[0], item)
    order = sorted(scores, key=lambda cid: -scores[cid])
    return [(cid, items[cid][1], items[cid][2], scores[cid]) for cid in order]
