"""A small BM25 index with numpy postings: scores touch only documents that contain a query term."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his i if in into is it its of on or our she so such "
    "that the their them then there these they this to was we were what when where which who whom why will with "
    "you your does do did can could should would may might must shall how about any all not no".split())


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


class BM25Index:
    """Okapi BM25 over a fixed list of texts (k1=1.5, b=0.75)."""

    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75):
        self.n = len(texts)
        postings: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        lengths = np.zeros(self.n, dtype=np.float32)
        for i, text in enumerate(texts):
            counts = Counter(tokenize(text))
            lengths[i] = sum(counts.values())
            for term, tf in counts.items():
                docs, tfs = postings[term]
                docs.append(i)
                tfs.append(tf)
        avgdl = float(lengths.mean()) if self.n else 1.0
        norm = k1 * (1 - b + b * lengths / max(avgdl, 1e-9))
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, (docs, tfs) in postings.items():
            d = np.asarray(docs, dtype=np.int32)
            tf = np.asarray(tfs, dtype=np.float32)
            idf = math.log(1 + (self.n - len(d) + 0.5) / (len(d) + 0.5))
            self._postings[term] = (d, (idf * tf * (k1 + 1) / (tf + norm[d])).astype(np.float32))

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """(index, score) of the k best texts with a positive score, best first."""
        scores = np.zeros(self.n, dtype=np.float32)
        for term in set(tokenize(query)):
            if term in self._postings:
                docs, weights = self._postings[term]
                scores[docs] += weights
        hits = np.flatnonzero(scores)
        if hits.size == 0:
            return []
        if hits.size > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        order = hits[np.argsort(-scores[hits], kind="stable")]
        return [(int(i), float(scores[i])) for i in order]
