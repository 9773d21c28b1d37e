"""BM25: scores match the textbook formula, and an updated index scores exactly like one built from scratch."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from lib.documents.bm25 import BM25Index, tokenize

WORDS = [
    "holiday",
    "expense",
    "receipt",
    "taxi",
    "approval",
    "office",
    "leeds",
    "lyon",
    "parking",
    "permit",
    "badge",
    "laptop",
    "password",
    "reset",
    "printer",
    "canteen",
    "invoice",
    "manager",
    "travel",
    "hotel",
    "budget",
    "policy",
    "contract",
    "notice",
]
QUERIES = [
    "holiday approval",
    "taxi receipts for travel",
    "parking permit badge",
    "printer password reset",
    "canteen",
    "unknown words only",
]


def reference_scores(texts: list[str], query: str, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """Okapi BM25 of each text, straight from the definition."""
    counts = [Counter(tokenize(t)) for t in texts]
    n = len(texts)
    avgdl = sum(sum(c.values()) for c in counts) / n
    out = []
    for c in counts:
        dl, score = sum(c.values()), 0.0
        for term in set(tokenize(query)):
            if c[term]:
                df = sum(1 for other in counts if other[term])
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * c[term] * (k1 + 1) / (c[term] + k1 * (1 - b + b * dl / avgdl))
        out.append(score)
    return out


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(n)]


def scores_by_text_id(index: BM25Index, ids: list[str]) -> dict[str, dict[str, float]]:
    return {q: {i: float(s) for i, s in zip(ids, index.scores(q)) if s > 0} for q in QUERIES}


def assert_same_scores(updated: BM25Index, updated_ids: list[str], texts: dict[str, str]) -> None:
    """`updated` (rows named by updated_ids) scores like an index built from scratch on the same texts."""
    scratch_ids = sorted(texts, reverse=True)  # another row order: scores must not depend on it
    scratch = BM25Index([texts[i] for i in scratch_ids])
    got, want = scores_by_text_id(updated, updated_ids), scores_by_text_id(scratch, scratch_ids)
    for q in QUERIES:
        assert got[q].keys() == want[q].keys(), q
        assert got[q] == pytest.approx(want[q], rel=1e-6), q
    assert updated.n == len(texts)


def test_scores_are_the_okapi_bm25_of_each_text():
    texts = [*corpus(60, seed=1), "Taxis need approval.", "", "The the the"]
    index = BM25Index(texts)
    for q in QUERIES:
        assert index.scores(q) == pytest.approx(reference_scores(texts, q), rel=1e-5, abs=1e-6), q
    best = index.top("taxi approval", 3)
    assert best[0][0] == max(range(len(texts)), key=lambda i: reference_scores(texts, "taxi approval")[i])
    assert index.top("nothing matches this", 3) == []


def test_an_index_with_texts_added_scores_like_one_built_from_scratch():
    texts = {f"a{i}": t for i, t in enumerate(corpus(200, seed=2))}
    ids = list(texts)
    index = BM25Index([texts[i] for i in ids])
    new = {f"b{i}": t for i, t in enumerate([*corpus(5, seed=3), "brand new zeppelin hangar words"])}
    updated = index.updated(np.ones(len(ids), dtype=bool), list(new.values()))
    assert_same_scores(updated, ids + list(new), texts | new)
    assert updated.top("zeppelin hangar", 1)[0][0] == len(ids) + 5  # a word only the new text has
    assert index.top("zeppelin", 1) == []  # the old index is left as it was, for searches still using it


def test_an_index_with_texts_removed_scores_like_one_built_from_scratch():
    texts = {f"a{i}": t for i, t in enumerate(corpus(200, seed=4))}
    ids = list(texts)
    keep = np.array([i % 3 != 0 for i in range(len(ids))])
    updated = BM25Index([texts[i] for i in ids]).updated(keep, [])
    kept = [i for i, k in zip(ids, keep) if k]
    assert_same_scores(updated, kept, {i: texts[i] for i in kept})


def test_a_re_versioned_document_scores_like_a_fresh_build_after_several_updates():
    texts = {f"d{d}-v1-c{c}": t for d in range(20) for c, t in enumerate(corpus(8, seed=d))}
    ids = list(texts)
    index = BM25Index([texts[i] for i in ids])
    for version in (2, 3):  # document 7 replaced twice, document 3 deleted on the way
        gone = {7, 3} if version == 2 else {7}
        keep = np.array([int(i.split("-")[0][1:]) not in gone for i in ids])
        new = {f"d7-v{version}-c{c}": t for c, t in enumerate(corpus(4, seed=100 + version))}
        index = index.updated(keep, list(new.values()))
        ids = [i for i, k in zip(ids, keep) if k] + list(new)
        texts = {i: texts[i] for i in ids if i in texts} | new
        assert_same_scores(index, ids, texts)


def test_everything_removed_then_added_again_and_a_wrong_mask_is_refused():
    index = BM25Index(corpus(10, seed=5))
    empty = index.updated(np.zeros(10, dtype=bool), [])
    assert empty.n == 0 and empty.top("holiday", 5) == []
    again = empty.updated(np.zeros(0, dtype=bool), ["holiday policy"])
    assert again.top("holiday", 5)[0][0] == 0
    with pytest.raises(ValueError, match="mask of 10 rows"):
        index.updated(np.ones(9, dtype=bool), [])
