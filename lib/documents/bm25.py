"""A small BM25 index with numpy postings that can be updated without tokenizing its texts again."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "such",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "does",
        "do",
        "did",
        "can",
        "could",
        "should",
        "would",
        "may",
        "might",
        "must",
        "shall",
        "how",
        "about",
        "any",
        "all",
        "not",
        "no",
    ]
)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words, plural -s folded."""
    out = []
    for t in _TOKEN.findall(text.lower()):
        if t in STOPWORDS:
            continue
        if len(t) > 4 and t.endswith("s") and not t.endswith("ss"):
            t = t[:-1]
        out.append(t)
    return out


def _count(texts: list[str], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(term id, row, term frequency) of every distinct term of every text, and each text's length in tokens."""
    terms: list[int] = []
    rows: list[int] = []
    tfs: list[int] = []
    lengths = np.zeros(len(texts), dtype=np.int32)
    for i, text in enumerate(texts):
        counts = Counter(tokenize(text))
        lengths[i] = sum(counts.values())
        for term, tf in counts.items():
            terms.append(vocab.setdefault(term, len(vocab)))
            rows.append(i)
            tfs.append(tf)
    return (
        np.asarray(terms, dtype=np.int32),
        np.asarray(rows, dtype=np.int32),
        np.asarray(tfs, dtype=np.int32),
        lengths,
    )


def _offsets(df: np.ndarray) -> np.ndarray:
    """CSR offsets from per-term counts: term t's entries are [out[t], out[t + 1])."""
    out = np.zeros(len(df) + 1, dtype=np.int64)
    np.cumsum(df, out=out[1:])
    return out


class BM25Index:
    """Okapi BM25 over a list of texts (k1=1.5, b=0.75).

    The postings keep raw term counts, sorted by term (CSR: `_ptr[t]:_ptr[t + 1]` are term t's entries), and
    the weights are computed at query time, so `updated()` can drop and append texts without tokenizing the
    kept ones again while idf and the average length still come from the whole new corpus.
    """

    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75):
        vocab: dict[str, int] = {}
        terms, rows, tfs, lengths = _count(texts, vocab)
        order = np.argsort(terms, kind="stable")
        self._set(vocab, _offsets(np.bincount(terms, minlength=len(vocab))), rows[order], tfs[order], lengths, k1, b)

    def _set(
        self,
        vocab: dict[str, int],
        ptr: np.ndarray,
        rows: np.ndarray,
        tfs: np.ndarray,
        lengths: np.ndarray,
        k1: float,
        b: float,
    ) -> None:
        self.k1, self.b, self.n = k1, b, len(lengths)
        self._vocab, self._ptr, self._rows, self._tfs, self._lengths = vocab, ptr, rows, tfs, lengths
        df = np.diff(ptr)
        self._idf = np.log1p((self.n - df + 0.5) / (df + 0.5))
        # A float64 sum of integers is exact, so the average (and every score) does not depend on row order.
        avgdl = float(lengths.sum(dtype=np.float64)) / self.n if self.n else 1.0
        self._norm = (k1 * (1 - b + b * lengths.astype(np.float64) / max(avgdl, 1e-9))).astype(np.float32)

    def updated(self, keep: np.ndarray, texts: list[str]) -> BM25Index:
        """A new index of the kept rows (boolean mask, order kept) followed by `texts`; only `texts` are tokenized."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.n,):
            raise ValueError(f"keep must be a mask of {self.n} rows, not of shape {keep.shape}")
        vocab = dict(self._vocab)  # this index stays usable by searches already running
        new_terms, new_rows, new_tfs, new_lengths = _count(texts, vocab)
        ptr, rows, tfs = self._ptr, self._rows, self._tfs
        if not keep.all():
            alive = keep[rows]
            terms = np.repeat(np.arange(len(self._vocab), dtype=np.int32), np.diff(ptr))[alive]
            ptr = _offsets(np.bincount(terms, minlength=len(self._vocab)))
            rows, tfs = (np.cumsum(keep, dtype=np.int32) - 1)[rows[alive]], tfs[alive]
        # Each new entry goes after its term's kept entries: rows stay ascending within a term, as in a fresh build.
        order = np.argsort(new_terms, kind="stable")
        new_terms, new_rows, new_tfs = new_terms[order], new_rows[order] + int(keep.sum()), new_tfs[order]
        at = ptr[np.minimum(new_terms + 1, len(ptr) - 1)]
        df = np.bincount(new_terms, minlength=len(vocab))
        df[: len(ptr) - 1] += np.diff(ptr)
        out = BM25Index.__new__(BM25Index)
        out._set(
            vocab,
            _offsets(df),
            np.insert(rows, at, new_rows),
            np.insert(tfs, at, new_tfs),
            np.concatenate([self._lengths[keep], new_lengths]),
            self.k1,
            self.b,
        )
        return out

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every row for `query` (0 where no query term occurs)."""
        scores = np.zeros(self.n, dtype=np.float32)
        for term in sorted(set(tokenize(query))):
            t = self._vocab.get(term)
            if t is None or self._ptr[t] == self._ptr[t + 1]:
                continue
            lo, hi = self._ptr[t], self._ptr[t + 1]
            rows, tf = self._rows[lo:hi], self._tfs[lo:hi].astype(np.float32)
            scores[rows] += np.float32(self._idf[t] * (self.k1 + 1)) * tf / (tf + self._norm[rows])
        return scores

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """(index, score) of the k best texts with a positive score, best first."""
        scores = self.scores(query)
        hits = np.flatnonzero(scores)
        if hits.size == 0:
            return []
        if hits.size > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        order = hits[np.argsort(-scores[hits], kind="stable")]
        return [(int(i), float(scores[i])) for i in order]
