"""The retriever's BM25 index follows uploads, deletions and new versions, from this or another process."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from lib.core.identity import local_identity
from lib.core.settings import load_settings
from lib.core.tables import Document
from lib.documents.bm25 import BM25Index
from lib.documents.indexing import ChunkingSettings, Indexer, delete_document, get_collection
from lib.documents.retrieval import RetrievalSettings, Retriever
from lib.documents.vectorstore import make_chroma_client, open_store

BM25 = RetrievalSettings(k=1000, mode="bm25")
QUERIES = ["paid holiday days", "taxi receipts approval", "parking permit", "zeppelin hangar", "office"]
FILES = {
    "holidays.txt": "Every employee gets 28 days of paid holiday per year. Unused days expire in March.",
    "expenses.txt": "Submit receipts within 30 days. Taxis need approval from your manager.",
    "parking.txt": "Parking permits come from reception. The office car park closes at 22:00.",
    "it.txt": "Reset your password at the IT desk on the second floor of the office.",
}

ADMIN = local_identity("admin")  # may delete any document


class CountingStore:
    """A Chroma store that records how many chunks each read returned."""

    def __init__(self, inner, reads: list[int]):
        self.inner, self.reads = inner, reads

    def get(self, **kwargs):
        part = self.inner.get(**kwargs)
        self.reads.append(len(part["ids"]))
        return part

    def __getattr__(self, name):
        return getattr(self.inner, name)


class CountingRetriever(Retriever):
    """A retriever whose Chroma reads are counted."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads: list[int] = []

    def store(self, chroma_name: str):
        return CountingStore(super().store(chroma_name), self.reads)


@pytest.fixture
def env(data_dir, fresh_engine, local_embeddings, any_chroma):
    def process():
        """An indexer and a retriever with their own Chroma client, as in another app process."""
        client = make_chroma_client(load_settings())
        indexer = Indexer(
            fresh_engine, client, local_embeddings, data_dir / "originals", ChunkingSettings(120, 20, 1_000_000)
        )
        return indexer, CountingRetriever(fresh_engine, client, local_embeddings)

    indexer, retriever = process()
    col = get_collection(fresh_engine, "Handbook", create=True)
    for name, text in FILES.items():
        indexer.index_file(col, name, text.encode())
    return indexer, retriever, col, process


def bm25_scores(retriever: Retriever, query: str) -> dict[str, float]:
    return {h.chunk_id: h.score for h in retriever.search("Handbook", query, BM25)}


def scratch_scores(indexer: Indexer, engine, col, query: str) -> dict[str, float]:
    """Scores of a BM25Index built from scratch on the chunks of the current document versions."""
    with Session(engine) as s:
        current = {d.id: d.version for d in s.query(Document).filter_by(collection_id=col.id) if d.version > 0}
    got = open_store(indexer.client, col.chroma_name, indexer.embeddings).get(include=["documents", "metadatas"])
    rows = [
        (i, t)
        for i, t, m in zip(got["ids"], got["documents"], got["metadatas"])
        if current.get(m["document_id"]) == m["version"]
    ]
    scores = BM25Index([t for _, t in rows]).scores(query)
    return {cid: round(float(s), 4) for (cid, _), s in zip(rows, scores) if s > 0}


def assert_scores_as_from_scratch(retriever: Retriever, indexer: Indexer, engine, col) -> None:
    for q in QUERIES:
        got, want = bm25_scores(retriever, q), scratch_scores(indexer, engine, col, q)
        assert got == pytest.approx(want, abs=1e-4), q
        assert bm25_scores(Retriever(engine, indexer.client, indexer.embeddings), q) == pytest.approx(got, abs=1e-4)


def chunks_of(engine, name: str) -> int:
    with Session(engine) as s:
        return s.query(Document).filter_by(name=name).one().chunks


def test_an_upload_reads_only_the_new_chunks_and_is_found_through_bm25_at_once(env, fresh_engine):
    indexer, retriever, col, _ = env
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)
    retriever.reads.clear()
    indexer.index_file(col, "hangar.txt", b"The zeppelin hangar is behind building C. Visitors sign in first.")
    top = retriever.search("Handbook", "Where is the zeppelin hangar?", RetrievalSettings(k=1, mode="bm25"))[0]
    assert top.document == "hangar.txt" and "zeppelin" in top.text
    assert sum(retriever.reads) == chunks_of(fresh_engine, "hangar.txt")
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)


def test_a_deleted_document_leaves_the_index_without_reading_anything(env, fresh_engine):
    indexer, retriever, col, _ = env
    bm25_scores(retriever, "office")
    retriever.reads.clear()
    with Session(fresh_engine) as s:
        doc_id = s.query(Document).filter_by(name="parking.txt").one().id
    delete_document(fresh_engine, indexer.client, indexer.embeddings, doc_id, ADMIN)
    assert {h.document for h in retriever.search("Handbook", "parking permit office", BM25)} == {"it.txt"}
    assert sum(retriever.reads) == 0
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)


def test_a_new_version_replaces_the_old_chunks_in_the_index(env, fresh_engine):
    indexer, retriever, col, _ = env
    bm25_scores(retriever, "holiday")
    retriever.reads.clear()
    indexer.index_file(col, "holidays.txt", b"Every employee gets 31 days of paid holiday per year.")
    hits = retriever.search("Handbook", "paid holiday days", BM25)
    assert "31 days" in hits[0].text and not any("28 days" in h.text for h in hits)
    assert sum(retriever.reads) == chunks_of(fresh_engine, "holidays.txt")
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)


def test_uploads_and_deletions_by_another_process_are_noticed(env, fresh_engine):
    indexer, retriever, col, process = env
    bm25_scores(retriever, "office")
    other_indexer, _ = process()
    other_indexer.index_file(col, "hangar.txt", b"The zeppelin hangar is behind building C.")
    with Session(fresh_engine) as s:
        expenses = s.query(Document).filter_by(name="expenses.txt").one().id
    delete_document(fresh_engine, other_indexer.client, other_indexer.embeddings, expenses, ADMIN)
    assert retriever.search("Handbook", "zeppelin", BM25)[0].document == "hangar.txt"
    assert retriever.search("Handbook", "taxi receipts approval", BM25) == []
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)


def test_a_document_created_under_the_id_of_a_deleted_one_is_indexed(env, fresh_engine):
    indexer, retriever, col, _ = env
    bm25_scores(retriever, "office")
    with Session(fresh_engine) as s:
        last = s.query(Document).filter_by(name="it.txt").one().id
    delete_document(fresh_engine, indexer.client, indexer.embeddings, last, ADMIN)
    outcome = indexer.index_file(col, "hangar.txt", b"The zeppelin hangar is behind building C.")
    assert (outcome.document_id, outcome.version) == (last, 1)  # SQLite reuses the highest id: same id, same version
    assert retriever.search("Handbook", "zeppelin", BM25)[0].document == "hangar.txt"
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)


def test_a_document_read_while_its_chunks_were_still_changing_is_read_again(env, fresh_engine):
    indexer, retriever, col, _ = env
    bm25_scores(retriever, "office")
    outcome = indexer.index_file(
        col,
        "hangar.txt",
        b"The zeppelin hangar is behind building C. " * 2 + b"Airship pilots brief in the quonset hut next to it.",
    )
    assert outcome.chunks > 1
    store = open_store(indexer.client, col.chroma_name, indexer.embeddings)
    last = store.get(ids=[f"d{outcome.document_id}-v1-c{outcome.chunks - 1}"], include=["documents", "metadatas"])
    store.delete(ids=last["ids"])  # as if a read raced a write: one chunk is not there yet
    assert retriever.search("Handbook", "airship quonset", BM25) == []
    store.add_texts(last["documents"], metadatas=last["metadatas"], ids=last["ids"])
    assert retriever.search("Handbook", "airship quonset", BM25)[0].document == "hangar.txt"
    retriever.reads.clear()
    bm25_scores(retriever, "office")
    assert retriever.reads == []  # complete now: not read again
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)


def test_many_changed_documents_are_read_in_one_pass_with_the_same_scores(env, fresh_engine, monkeypatch):
    import lib.documents.retrieval

    indexer, retriever, col, _ = env
    bm25_scores(retriever, "office")
    monkeypatch.setattr(
        lib.documents.retrieval, "FULL_READ_DOCS", 0
    )  # above this many changed documents, one plain read
    indexer.index_file(col, "hangar.txt", b"The zeppelin hangar is behind building C.")
    retriever.reads.clear()
    assert retriever.search("Handbook", "zeppelin", BM25)[0].document == "hangar.txt"
    assert sum(retriever.reads) == sum(chunks_of(fresh_engine, n) for n in [*FILES, "hangar.txt"])
    assert_scores_as_from_scratch(retriever, indexer, fresh_engine, col)


class PublicStore:
    """A Chroma store that lets the retriever use only LangChain's public methods, not `_collection`."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(f"{name} is private to langchain-chroma")
        return getattr(self.inner, name)


class PublicRetriever(Retriever):
    """A retriever that sees its stores only through PublicStore."""

    def store(self, chroma_name: str):
        return PublicStore(super().store(chroma_name))


def test_vector_search_ranks_by_cosine_similarity_through_the_public_chroma_api(env, fresh_engine):
    import numpy as np

    indexer, _, col, _ = env
    retriever = PublicRetriever(fresh_engine, indexer.client, indexer.embeddings)
    vector = indexer.embeddings.embed_query("paid holiday days")
    hits = retriever.search("Handbook", "ignored", RetrievalSettings(k=3, mode="vector"), query_vector=vector)
    got = open_store(indexer.client, col.chroma_name, indexer.embeddings).get(include=["embeddings"])
    q = np.asarray(vector) / np.linalg.norm(vector)
    stored = np.asarray(got["embeddings"])
    similarity = dict(zip(got["ids"], stored @ q / np.linalg.norm(stored, axis=1)))
    best = sorted(similarity, key=lambda cid: -similarity[cid])[:3]
    assert [h.chunk_id for h in hits] == best
    assert [h.score for h in hits] == pytest.approx([similarity[cid] for cid in best], abs=1e-3)
    assert hits[0].document == "holidays.txt"


def test_retrieved_passages_become_table_rows_with_their_citation_and_score(env):
    from lib.documents.citations import sources_table

    _, retriever, _, _ = env
    hits = retriever.search("Handbook", "office", RetrievalSettings(k=2, mode="bm25"))
    rows = sources_table(hits)
    assert [(r["#"], r["document"], r["page"], r["score"]) for r in rows] == [
        (1, hits[0].document, None, hits[0].score),
        (2, hits[1].document, None, hits[1].score),
    ]
    assert {r["document"] for r in rows} == {"parking.txt", "it.txt"} and rows[0]["score"] >= rows[1]["score"]
    assert "office" in rows[0]["text"] and list(rows[0]) == [
        "#",
        "document",
        "page",
        "chunk",
        "score",
        "flagged",
        "text",
    ]
